"""The built-in evaluators on a tiny model: each runs, stores metric rows, and measures what it says."""

from __future__ import annotations

import json

import pytest

from middo_core.evaluate import EVALUATORS, EvalError, evaluate
from middo_core.evaluate.builtin import final_number, normalize_answer
from middo_core.evaluate.humaneval import check_program, load_problems, run_program
from middo_core.store import iterations as iter_store


def _metrics(ws):
    with ws.store.read() as con:
        frame = iter_store.get_metrics(con)
    return {(r.benchmark, r.metric): (r.value, r.n) for r in frame.itertuples()}


def test_each_builtin_evaluator_runs_and_stores_metrics(small_workspace, tiny_model):
    ws = small_workspace()
    (ws.artifacts / "demo_eval.jsonl").write_text(
        "\n".join(json.dumps({"prompt": f"Capital of {c}?", "answer": a})
                  for c, a in [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima")]) + "\n")
    events = []
    out = evaluate(ws, 0, suite=["heldout", "demo_exact", "mmlu", "gsm8k", "humaneval"],
                   model=tiny_model, sample_size=3, progress=events.append,
                   params={"gsm8k": {"max_new_tokens": 16}, "humaneval": {"max_new_tokens": 16}})
    got = _metrics(ws)
    assert got[("heldout", "loss")][1] == 3 and got[("heldout", "loss")][0] > 5  # random weights
    assert got[("heldout", "perplexity")][0] > 100
    for key in [("demo_exact", "exact_match"), ("mmlu", "accuracy"), ("gsm8k", "accuracy"),
                ("humaneval", "pass@1")]:
        value, n = got[key]
        assert 0.0 <= value <= 1.0 and n == 3, key
    assert all(r["skipped"] is None for r in out["results"].values())
    assert {e.stage for e in events} >= {"evaluate: heldout", "evaluate: mmlu", "evaluate: humaneval"}
    assert out["results"]["demo_exact"]["examples"][0]["answer"] == "Paris"


def test_missing_demo_file_is_skipped_with_a_reason(small_workspace, tiny_model):
    ws = small_workspace()
    out = evaluate(ws, 0, suite=["demo_exact"], model=tiny_model)
    assert "demo_eval.jsonl not found" in out["results"]["demo_exact"]["skipped"]
    assert "middo demo" in out["results"]["demo_exact"]["skipped"]
    assert _metrics(ws) == {}


def test_heldout_loss_falls_after_training_on_the_data(small_workspace, tiny_model):
    from middo_core.train import train

    ws = small_workspace()
    before = evaluate(ws, 0, suite=["heldout"], model=tiny_model)["results"]["heldout"]["metrics"]["loss"]
    train(ws, 0)
    out = evaluate(ws, 0, suite=["heldout"])  # default: the iteration's checkpoint
    after = out["results"]["heldout"]["metrics"]["loss"]
    assert out["model"].endswith("iter_0")
    assert after < before - 1.0, (before, after)
    with ws.store.read() as con:
        assert iter_store.get_iteration(con, 0)["status"] == "evaluated"


def test_untrained_iteration_and_unknown_evaluator_are_clear_errors(small_workspace):
    ws = small_workspace()
    with pytest.raises(EvalError, match=r"M\(0\) is not trained yet"):
        evaluate(ws, 0, suite=["heldout"])
    with pytest.raises(EvalError, match="unknown evaluator 'mmluu'"):
        evaluate(ws, 0, suite=["mmluu"])


def test_humaneval_runs_code_out_of_process_with_a_timeout():
    problem = load_problems()[0]
    assert run_program(check_program(problem, problem["canonical_solution"])) == (True, "passed")
    ok, reason = run_program(check_program(problem, "    return True\n"))
    assert not ok and "AssertionError" in reason
    assert run_program("while True:\n    pass\n", timeout_s=1.0) == (False, "timed out")
    # the guard refuses destructive calls; the evaluating process is untouched either way
    ok, reason = run_program("import os\nos.system('echo hi')\n")
    assert not ok


def test_answer_parsing():
    assert final_number("so 3 + 4 = 7. The answer is 1,234.") == 1234
    assert final_number("Janet sells 9 eggs.\n#### 18") == 18
    assert final_number("no digits here") is None
    assert normalize_answer("  The Paris. ") == normalize_answer("paris")


def test_registry_lists_the_builtin_suite_and_lm_eval():
    assert set(EVALUATORS.names()) >= {"heldout", "demo_exact", "mmlu", "gsm8k", "humaneval", "lm-eval"}

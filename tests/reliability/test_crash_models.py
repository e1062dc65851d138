"""SIGKILL during `middo diagnose`, `middo train` and `middo evaluate` on a tiny model: nothing
half-written is visible, and the rerun resumes from what was checkpointed and completes."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import check_consistent, kill9, middo, start_middo, wait_for

from middo_core.config import SignalsConfig, TrainConfig, WorkspaceConfig
from middo_core.jobs import job_status
from middo_core.jobs.runfiles import PROCESS_FILE, PROGRESS_FILE, RESULT_FILE, read_json, run_dir
from middo_core.sample import Sample
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace, open_workspace

pytestmark = pytest.mark.slow

COUNTRIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
             ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
             ("Cuba", "Havana"), ("Greece", "Athens"), ("Norway", "Oslo"), ("Poland", "Warsaw")]


def samples(n: int, tag: str = "") -> list[Sample]:
    out = []
    for i in range(n):
        country, city = COUNTRIES[i % len(COUNTRIES)]
        out.append(Sample(instruction=f"{tag}Question {i}: what is the capital of {country}?",
                          output=f"The capital of {country} is {city}. " * (1 + i % 4)))
    return out


def make_ws(root, tiny_model, data: list[Sample], heldout: list[Sample] | None = None, **cfg):
    ws = init_workspace(root, WorkspaceConfig(name="crash", base_model=tiny_model, **cfg))
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data + (heldout or [])))
        set_members(con, 0, [s.id for s in data])
        if heldout:
            set_members(con, 0, [s.id for s in heldout], "heldout")
    return ws


def cached_rows(ws, signal: str) -> int:
    with ws.store.read() as con:
        return con.execute("SELECT count(*) FROM signal_cache WHERE signal = ?", [signal]).fetchall()[0][0]


def test_kill_during_diagnosis_then_resume(tmp_path, tiny_model):
    n = 240
    # batch_size 1 -> ~40 samples per cache checkpoint: several checkpoints in one pass
    ws = make_ws(tmp_path / "ws", tiny_model, samples(n), signals=SignalsConfig(batch_size=1))
    log = tmp_path / "diagnose.log"
    proc = start_middo("diagnose", ws.root, "--signals", "complexity,diversity", log=log)
    wait_for(lambda: cached_rows(ws, "loss") > 0, what="the first checkpointed batch", proc=proc,
             log=log, interval=0.05)
    kill9(proc)

    at_kill = cached_rows(ws, "loss")
    assert 0 < at_kill < n
    state = check_consistent(ws.root)
    assert state["sizes"] == {0: n}
    with ws.store.read() as con:  # the signal rows are written in one transaction at the end
        assert con.execute("SELECT count(*) FROM signals").fetchall()[0][0] == 0
    rep = json.loads(middo("diagnose", ws.root, "--signals", "complexity,diversity", "--json").stdout)
    assert rep["n"] == n and rep["computed"]["post"] == n - at_kill  # only the rest was computed
    with ws.store.read() as con:
        rows = con.execute("""SELECT count(*), count(DISTINCT sample_id), count(loss_pre),
                              count(diversity) FROM signals WHERE iteration = 0""").fetchall()[0]
    assert rows == (n, n, n, n)
    assert cached_rows(ws, "loss") == n + rep["canaries"]["count"]  # the canaries after the samples
    check_consistent(ws.root)


def test_kill_during_training_then_resume(tmp_path, tiny_model):
    train_cfg = TrainConfig(preset="custom", learning_rate=3e-3, batch_size=1, max_len=64,
                            warmup_ratio=0.0, scheduler="constant")
    # 48 steps, saved every 12: a kill right after the first save leaves most of the run to do
    ws = make_ws(tmp_path / "ws", tiny_model, samples(48), train=train_cfg)
    work = ws.artifacts / "checkpoints" / "iter_0.work"

    def saved_step() -> int | None:
        done = [int(p.name.split("-")[1]) for p in work.glob("checkpoint-*")
                if (p / "trainer_state.json").exists()]
        return max(done) if done else None

    log = tmp_path / "train.log"
    proc = start_middo("train", ws.root, log=log)
    wait_for(saved_step, what="a first intermediate checkpoint", proc=proc, log=log, interval=0.02)
    kill9(proc)

    saved = saved_step()
    assert saved is not None and saved < 48
    with open_workspace(ws.root).store.read() as con:
        model = con.execute("SELECT model FROM iterations WHERE number = 0").fetchall()
    assert not model or model[0][0] is None  # M(0) is not recorded from a killed run
    assert not (ws.artifacts / "checkpoints" / "iter_0").exists()
    result = json.loads(middo("train", ws.root, "--json").stdout)
    assert result["resumed_from_step"] == saved and result["steps"] == 48
    with ws.store.read() as con:
        status, model = con.execute("SELECT status, model FROM iterations WHERE number = 0").fetchall()[0]
    assert status == "trained" and model == result["checkpoint"]
    assert not work.exists()
    check_consistent(ws.root)


def test_kill_during_evaluation_then_rerun(tmp_path, tiny_model):
    # longer held-out answers (~150 tokens each) keep the evaluation busy for a while
    heldout = [Sample(instruction=s.instruction, output=s.output * 4) for s in samples(64, tag="Held out. ")]
    ws = make_ws(tmp_path / "ws", tiny_model, samples(12), heldout=heldout)
    started = json.loads(middo("evaluate", ws.root, "--suite", "heldout", "--model", tiny_model,
                               "--sample-size", "64", "--background", "--json").stdout)
    folder = run_dir(ws, started["run_id"])

    def midway() -> bool:
        # the worker writes the stage's first event at once, then at most every 0.5 s
        p = read_json(folder / PROGRESS_FILE) or {}
        if p.get("total") and p.get("done", 0) >= p["total"] or (folder / RESULT_FILE).exists():
            raise AssertionError(f"the evaluation finished before it could be interrupted: {p}")
        return p.get("stage") == "evaluate: heldout" and p.get("done", 0) < p.get("total", 0)

    wait_for(midway, what="the evaluation's progress file to show it running", interval=0.02)
    kill9(read_json(folder / PROCESS_FILE)["pid"])

    status = wait_for(lambda: (s := job_status(ws, started["run_id"]))["status"] != "running" and s,
                      30, "the dead worker to be noticed")
    assert status["status"] == "failed" and not status["alive"]
    with ws.store.read() as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchall()[0][0] == 0
    out = json.loads(middo("evaluate", ws.root, "--suite", "heldout", "--model", tiny_model,
                           "--sample-size", "64", "--json").stdout)
    assert out["results"]["heldout"]["n"] == 64
    with ws.store.read() as con:
        metrics = con.execute("SELECT benchmark, metric, value FROM metrics").fetchall()
    assert sorted(m for _, m, _ in metrics) == ["loss", "perplexity", "sample_loss", "tokens"]
    assert all(b == "heldout" and v == v for b, _, v in metrics)  # one row each, no NaN
    check_consistent(ws.root)

"""refine() end to end against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import logging

import pytest

from middo_core.llm import OpenAIBackend
from middo_core.progress import Cancelled
from middo_core.refine import RefineOptions, refine
from middo_core.store.iterations import get_iteration
from middo_core.store.proposals import list_proposals
from tests.llm.openai_server import default_answer


def backend() -> OpenAIBackend:
    return OpenAIBackend(model="loopback-model", backoff_base_s=0.01, max_retries=3)


def proposals(ws, iteration: int = 1):
    with ws.store.read() as con:
        return list_proposals(con, iteration)


FULL = RefineOptions(template_variant="full")


def test_one_proposal_per_axis_and_sample_with_provenance(refine_ws, loopback, api_key):
    ids = refine_ws.ids
    flagged = {"complexity": [ids[0], ids[1]], "quality": [ids[1]], "diversity": [ids[2]]}
    rep = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert rep.created == {"complexity": 2, "quality": 1, "diversity": 1} and rep.total_failed == 0
    frame = proposals(refine_ws)
    assert len(frame) == 4 and set(frame["status"]) == {"pending"}
    assert sorted(frame[frame["source_id"] == ids[1]]["axis"]) == ["complexity", "quality"]
    aug = frame[frame["axis"] == "diversity"].iloc[0]
    assert aug["neighbour_ids"] == [ids[3], ids[4]]  # the stored neighbours, nearest first
    row = frame[frame["axis"] == "complexity"].iloc[0]
    assert row["instruction"].startswith("Write a short, clear exercise") and row["input"] == ""
    assert row["output"].startswith("Here is a complete answer")
    assert "FINAL PROMPT:" in row["raw_text"] and row["raw_response"] == row["output"]
    assert len(row["template_hash"]) == 12 and row["model"] == "loopback-model"
    assert row["params"]["temperature"] == 1.0 and row["params"]["top_p"] == 1.0
    assert row["params"]["rewrite_template"] == "refine_simplify_full"
    assert row["usage"]["rewrite"]["prompt_tokens"] > 0 and row["usage"]["response"]["completion_tokens"] > 0
    # the augment request showed the neighbours as hints and the sample as the core prompt
    sent = [r["messages"][-1]["content"] for r in loopback.requests if "NEW PROMPT:" in r["messages"][-1]["content"]]
    assert len(sent) == 1 and all(refine_ws.samples[i].instruction in sent[0] for i in (2, 3, 4))
    with refine_ws.store.read() as con:
        rec = get_iteration(con, 1)
    assert rec["status"] == "refined"
    assert rec["counts"]["proposals"] == {"complexity": 2, "quality": 1, "diversity": 1}
    assert rec["counts"]["proposals_failed"] == 0


def test_faults_end_in_the_right_status_and_reason(refine_ws, loopback, api_key):
    s = refine_ws.samples

    def answer(body):
        prompt = body["messages"][-1]["content"]
        if s[0].instruction in prompt:
            return "I'm sorry, but I can't help with rewriting this."
        if s[1].instruction in prompt:
            return "Here is an easier version: Count the votes in a class election."  # no marker
        if s[2].instruction in prompt:
            return "Step 1 ...\nFINAL PROMPT:\n\"\""  # nothing usable after the marker
        if s[3].instruction in prompt:
            return "FINAL PROMPT:\nStep 3 - Rewrite: a haiku"  # template text leaked
        return default_answer(body)

    loopback.answer = answer
    loopback.faults.extend(["429", "500", "malformed"])
    ids = refine_ws.ids
    rep = refine(refine_ws, 1, {"complexity": ids[:6]}, backend=backend(), options=FULL)
    frame = proposals(refine_ws).set_index("source_id")
    reasons = frame["reason"].to_dict()
    assert reasons[ids[0]].startswith("the model refused")
    assert reasons[ids[1]] == "no 'FINAL PROMPT:' marker in the answer"
    assert reasons[ids[2]] == "nothing after the 'FINAL PROMPT:' marker"
    assert reasons[ids[3]].startswith("template text leaked")
    assert frame.loc[ids[4], "status"] == "pending" and frame.loc[ids[5], "status"] == "pending"
    assert rep.retries == 3 and rep.retry_reasons == {"HTTP 429": 1, "HTTP 500": 1, "malformed response": 1}
    failed = frame[frame["status"] == "failed"]
    assert failed["reason"].notna().all() and failed["output"].isna().all()
    pending = frame[frame["status"] == "pending"]
    assert pending["instruction"].str.len().gt(0).all() and pending["output"].str.len().gt(0).all()


def test_identical_rewrite_is_rejected(refine_ws, loopback, api_key):
    s = refine_ws.samples[0]
    loopback.answer = lambda body: f"FINAL PROMPT:\n\"{s.instruction}\""
    rep = refine(refine_ws, 1, {"quality": [s.id]}, backend=backend(), options=FULL)
    assert rep.failure_reasons == {"identical to the source prompt": 1}


def test_lenient_fallback_is_recorded(refine_ws, loopback, api_key):
    loopback.answer = lambda body: "Thinking...\n\nCount the red apples in a basket of five."
    opts = RefineOptions(template_variant="full", lenient_marker=True)
    rep = refine(refine_ws, 1, {"quality": [refine_ws.ids[0]]}, backend=backend(), options=opts)
    row = proposals(refine_ws).iloc[0]
    assert rep.total_created == 1 and row["status"] == "pending"
    assert row["instruction"] == "Count the red apples in a basket of five."
    assert row["params"]["parse"] == "lenient (no marker)"


def test_rerun_and_crash_recovery_never_pay_twice(refine_ws, loopback, api_key):
    flagged = {"complexity": refine_ws.ids[:4], "diversity": refine_ws.ids[4:6]}
    refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    paid = loopback.count
    assert paid == 12
    again = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert loopback.count == paid and again.skipped_done == 6 and again.usage["calls"] == 0
    # a crash after the answers arrived but before the proposals were stored
    with refine_ws.store.write() as con:
        con.execute("DELETE FROM proposals")
    resumed = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert loopback.count == paid  # every answer came from the cache
    assert resumed.total_created == 6 and resumed.usage["cache_hits"] == 12
    assert len(proposals(refine_ws)) == 6  # and no duplicates


def test_retry_failed_asks_again_only_for_failures(refine_ws, loopback, api_key):
    target = refine_ws.samples[0].instruction
    loopback.answer = lambda b: ("no marker here" if target in b["messages"][-1]["content"]
                                 else default_answer(b))
    flagged = {"complexity": refine_ws.ids[:3]}
    first = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert first.total_failed == 1 and loopback.count == 5
    plain = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert plain.skipped_failed == 1 and loopback.count == 5
    loopback.answer = default_answer
    retry = refine(refine_ws, 1, flagged, backend=backend(), options=FULL, retry_failed=True)
    assert loopback.count == 7  # a fresh rewrite and its response, not the cached failure
    assert retry.total_created == 1
    frame = proposals(refine_ws)
    assert len(frame) == 3 and set(frame["status"]) == {"pending"}
    assert frame[frame["source_id"] == refine_ws.ids[0]].iloc[0]["params"]["attempt"] == 1


def test_budget_stops_issuing_calls_and_a_later_run_finishes(refine_ws, loopback, api_key):
    cfg = refine_ws.config.refine
    cfg.price_per_1k_input, cfg.price_per_1k_output, cfg.concurrency = 1.0, 1.0, 1
    cfg.budget_usd = 0.5  # a few calls' worth
    flagged = {"complexity": refine_ws.ids}
    rep = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert rep.not_created_budget > 0 and rep.total_created + rep.not_created_budget == 8
    assert rep.usage["cost_usd"] >= 0.5 and loopback.count == rep.usage["calls"]
    assert len(proposals(refine_ws)) == rep.total_created  # the rest were not created at all
    with refine_ws.store.read() as con:
        assert get_iteration(con, 1)["status"] != "refined"
    paid = loopback.count
    cfg.budget_usd = None
    rest = refine(refine_ws, 1, flagged, backend=backend(), options=FULL)
    assert rest.total_created == rep.not_created_budget and rest.skipped_done == rep.total_created
    assert loopback.count == paid + rest.usage["calls"]  # nothing paid twice
    assert loopback.count == len({str(r) for r in loopback.requests}) == 16


def test_dry_run_estimates_without_calling(refine_ws, loopback, api_key):
    cfg = refine_ws.config.refine
    cfg.price_per_1k_input, cfg.price_per_1k_output = 0.15, 0.6
    flagged = {"complexity": refine_ws.ids[:3], "quality": refine_ws.ids[:2]}
    rep = refine(refine_ws, 1, flagged, backend=backend(), dry_run=True, options=FULL)
    est = rep.estimate
    assert loopback.count == 0 and len(proposals(refine_ws)) == 0
    assert est["proposals"] == 5 and est["calls"] == 10 and est["cached_calls"] == 0
    assert est["prompt_tokens"] > 0 and est["completion_tokens_max"] == 10 * cfg.max_new_tokens
    assert est["cost_usd_max"] > 0
    refine(refine_ws, 1, {"complexity": refine_ws.ids[:3]}, backend=backend(), options=FULL)
    with refine_ws.store.write() as con:
        con.execute("DELETE FROM proposals")  # answers cached, proposals lost
    after = refine(refine_ws, 1, flagged, backend=backend(), dry_run=True, options=FULL).estimate
    assert after["cached_calls"] == 6 and after["calls"] == 4


def test_cancel_keeps_what_finished(refine_ws, loopback, api_key):
    cfg = refine_ws.config.refine
    cfg.concurrency = 1

    def progress(event):
        if event.done >= 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        refine(refine_ws, 1, {"complexity": refine_ws.ids}, backend=backend(), progress=progress,
               options=FULL)
    assert len(proposals(refine_ws)) == 3


def test_api_key_never_written_anywhere(refine_ws, loopback, api_key, caplog):
    caplog.set_level(logging.DEBUG)
    loopback.faults.extend(["429", "500"])
    s0 = refine_ws.samples[0].instruction
    loopback.answer = lambda b: ("I'm sorry, I can't." if s0 in b["messages"][-1]["content"]
                                 else default_answer(b))
    refine(refine_ws, 1, {"complexity": refine_ws.ids, "diversity": refine_ws.ids[:3]},
           backend=backend(), options=FULL)
    assert f"Bearer {api_key}" in loopback.auth_headers
    files = [p for p in refine_ws.root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files) and any("llm_cache" in str(p) for p in files)
    for path in files:
        assert api_key.encode() not in path.read_bytes(), path
    assert api_key not in caplog.text and "retry" in caplog.text


def test_unknown_axis_is_refused(refine_ws):
    with pytest.raises(ValueError, match="unknown axes"):
        refine(refine_ws, 1, {"style": refine_ws.ids[:1]}, backend=backend(), dry_run=True)


def test_proposals_complete_steadily_not_all_at_the_end(refine_ws, loopback, api_key):
    loopback.delay_s = 0.05
    refine_ws.config.refine.concurrency = 2
    refine(refine_ws, 1, {"complexity": refine_ws.ids}, backend=backend(), options=FULL)
    stages = ["rewrite" if "FINAL PROMPT:" in r["messages"][-1]["content"] else "response"
              for r in loopback.requests]
    assert stages.count("rewrite") == 8 and stages.count("response") == 8
    # a waiting response goes before a new rewrite (first come, first served would send all
    # eight rewrites first): proposals finish one by one and a stopped run keeps them
    assert stages.index("response") <= 3
    runs = "".join("w" if s == "rewrite" else "r" for s in stages).split("r")
    assert max(len(r) for r in runs) <= 3, stages


def test_answers_cut_at_the_token_limit_are_failed_unless_kept(refine_ws, loopback, api_key):
    ids = refine_ws.ids
    short = RefineOptions(template_variant="full", response_max_tokens=4)  # the answer is longer
    rep = refine(refine_ws, 1, {"quality": ids[:2]}, backend=backend(), options=short)
    frame = proposals(refine_ws)
    assert rep.total_failed == 2 and set(frame["status"]) == {"failed"}
    assert all(r.startswith("response cut at the token limit (4 tokens)") for r in frame["reason"])
    kept = RefineOptions(template_variant="full", response_max_tokens=4, keep_truncated=True)
    rep = refine(refine_ws, 1, {"quality": ids[:2]}, backend=backend(), options=kept,
                 retry_failed=True)
    frame = proposals(refine_ws)
    assert set(frame["status"]) == {"pending"} and (frame["output"].str.len() <= 16).all()

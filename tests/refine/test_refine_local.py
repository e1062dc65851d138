"""refine() with the local backend on a tiny random model: the pipeline, not the prose."""

from __future__ import annotations

from middo_core.llm import LocalBackend
from middo_core.refine import RefineOptions, refine
from middo_core.store.iterations import get_iteration
from middo_core.store.proposals import list_proposals

SHORT = RefineOptions(rewrite_max_tokens=12, response_max_tokens=12)  # compact templates (default)


def test_local_refine_stores_proposals_or_reasons(refine_ws, tiny_model):
    ids = refine_ws.ids
    flagged = {"complexity": ids[:3], "quality": ids[2:4], "diversity": ids[4:6]}
    llm = LocalBackend(model=tiny_model, batch_size=4)
    rep = refine(refine_ws, 1, flagged, backend=llm, options=SHORT)
    with refine_ws.store.read() as con:
        frame = list_proposals(con, 1)
        rec = get_iteration(con, 1)
    assert len(frame) == 7 and rep.total_created + rep.total_failed == 7
    assert llm.stats.requests == rep.usage["calls"] and rep.usage["calls"] >= 7
    for row in frame.to_dict("records"):
        assert row["params"]["prefill"] is True and row["params"]["template_variant"] == "compact"
        marker = "NEW PROMPT:" if row["axis"] == "diversity" else "FINAL PROMPT:"
        assert row["raw_text"].startswith(marker)  # the answer was started with the marker
        assert row["usage"]["rewrite"]["completion_tokens"] <= 12
        if row["status"] == "pending":
            assert row["instruction"].strip() and row["output"].strip()
        else:
            assert row["status"] == "failed" and row["reason"]
    assert rec["counts"]["proposals_failed"] == rep.total_failed
    assert rec["status"] == "refined"
    # a rerun finds everything stored and loads no model
    again = LocalBackend(model=tiny_model)
    rerun = refine(refine_ws, 1, flagged, backend=again, options=SHORT)
    assert rerun.skipped_done + rerun.skipped_failed == 7 and again._model is None


def test_missing_local_model_stops_the_run_with_a_clear_error(refine_ws, tmp_path):
    import pytest

    from middo_core.llm import LLMConfigError

    with pytest.raises(LLMConfigError, match="cannot load local model"):
        refine(refine_ws, 1, {"complexity": refine_ws.ids[:2]},
               backend=LocalBackend(model=str(tmp_path / "nowhere")), options=SHORT)
    with refine_ws.store.read() as con:
        assert list_proposals(con, 1).empty  # nothing half-written


def test_local_token_ceiling_applies_and_is_recorded(refine_ws, tiny_model):
    llm = LocalBackend(model=tiny_model, max_tokens_cap=5)
    rep = refine(refine_ws, 1, {"quality": refine_ws.ids[:3]}, backend=llm, dry_run=True)
    assert rep.estimate["calls"] == 6 and rep.estimate["completion_tokens_max"] == 6 * 5
    assert llm._model is None  # an estimate loads no model

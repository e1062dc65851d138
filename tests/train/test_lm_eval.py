"""lm-evaluation-harness through the evaluator interface, offline, over the packaged MMLU copy."""

from __future__ import annotations

import pytest

from middo_core.evaluate import evaluate
from middo_core.store import iterations as iter_store

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install middo-studio[eval])")


@pytest.mark.slow
def test_lm_eval_packaged_mmlu_on_a_tiny_model(small_workspace, tiny_model):
    ws = small_workspace()
    out = evaluate(ws, 0, suite=["lm-eval"], model=tiny_model, sample_size=4,
                   params={"lm-eval": {"tasks": ["middo_mmlu"], "batch_size": 4}})
    metrics = out["results"]["lm-eval"]["metrics"]
    assert 0.0 <= metrics["lm-eval/middo_mmlu:acc"] <= 1.0
    with ws.store.read() as con:
        rows = iter_store.get_metrics(con)
    row = rows[(rows.benchmark == "lm-eval/middo_mmlu") & (rows.metric == "acc")]
    assert len(row) == 1 and int(row.iloc[0].n) == 4

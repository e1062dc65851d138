"""Correctness at 100,000 samples: import, signals, selection, browse and search, export, all
agreeing with an independent computation on the source records (timings: benchmarks/bench_load.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reliability_helpers import check_consistent

from benchmarks.bench_import import synthetic_records
from benchmarks.bench_load import write_synthetic_signals
from middo_core.data import export_dataset, import_file
from middo_core.sample import Sample
from middo_core.selection import SignalTable
from middo_core.store.signals import load_signals
from middo_core.store.views import browse_samples, count_samples
from middo_core.workspace import init_workspace

pytestmark = pytest.mark.slow
N = 100_000


def test_100k_workspace_is_correct_end_to_end(tmp_path):
    records = synthetic_records(N, seed=7)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    expected = {Sample(**r).id: r for r in records}
    ws = init_workspace(tmp_path / "ws")

    rep = import_file(ws, path)
    assert rep.n_read == N and rep.n_imported == len(expected) and rep.n_errors == 0
    assert rep.n_duplicates == N - len(expected)

    write_synthetic_signals(ws, seed=1)
    with ws.store.read() as con:
        frame = load_signals(con, 0)
    assert len(frame) == len(expected) and frame["loss_pre"].notna().all()
    table = SignalTable(frame)
    sel = table.select(1.0, -1.5, -1.5)
    # thresholds recomputed independently: tau = mu + m * sigma (population sigma)
    pre, post = frame["loss_pre"].to_numpy(), frame["loss_post"].to_numpy()
    div, qual = frame["diversity"].to_numpy(), frame["quality"].to_numpy()
    complex_ = (pre > pre.mean() + pre.std()) & (post > post.mean() + post.std())
    sparse = div < div.mean() - 1.5 * div.std()
    low = qual < qual.mean() - 1.5 * qual.std()
    assert np.array_equal(sel.masks["complexity"], complex_)
    assert np.array_equal(sel.masks["diversity"], sparse) and np.array_equal(sel.masks["quality"], low)
    assert 0 < complex_.sum() < N and 0 < sparse.sum() < N

    with ws.store.read() as con:
        total = count_samples(con, 0)
        last = browse_samples(con, 0, limit=50, offset=total - 7)
        first = browse_samples(con, 0, limit=50)
        hits = count_samples(con, 0, text="River Story")
        page = browse_samples(con, 0, text="River Story", limit=50)
    ordered = sorted(expected)
    assert total == len(expected)
    assert list(first["id"]) == ordered[:50] and list(last["id"]) == ordered[-7:]
    matching = [sid for sid, r in expected.items()
                if any("river story" in r.get(k, "").lower() for k in ("instruction", "input", "output"))]
    assert hits == len(matching) > 0 and set(page["id"]) <= set(matching) and len(page) == min(50, hits)
    assert first["loss_pre"].notna().all()  # each row joined with its signals

    out = export_dataset(ws, tmp_path / "out.jsonl", "jsonl")
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(exported) == len(expected)
    assert {Sample(**r).id for r in exported} == set(expected)
    state = check_consistent(ws.root)
    assert state["samples"] == len(expected) and state["sizes"] == {0: len(expected)}

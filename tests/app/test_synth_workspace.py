"""The synthetic benchmark workspace (benchmarks/synth_workspace.py) is one every Studio page reads.

A small one (2,000 samples) is built with the real store and opened page by page with AppTest,
so the builder the scale benchmarks rely on cannot drift from the store or the pages."""

from __future__ import annotations

import pytest
from studio_helpers import open_app, texts

from benchmarks.synth_workspace import build_synthetic_workspace
from middo_core import loop, tables
from middo_core.review import review_counts
from middo_core.store.signals import load_signals
from middo_core.store.views import browse_samples, count_samples

N, P = 2_000, 300


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return build_synthetic_workspace(tmp_path_factory.mktemp("synth") / "ws", N, proposals=P,
                                     progress=None)


def test_builder_writes_a_diagnosed_refined_iteration(synth):
    ws = synth
    assert "synthetic" in ws.config.name
    states = loop.step_states(ws, 0)
    assert states["built"] and states["diagnosed"] and states["selected"] and states["refined"]
    assert not states["reviewed"]
    assert review_counts(ws, 0)  # proposals on more than one axis, all pending
    assert sum(by["pending"] for by in review_counts(ws, 0).values()) == P
    with ws.store.read() as con:
        signals = load_signals(con, 0)
        assert count_samples(con, 0) == N
        # every record says it is synthetic; a topic word finds a cluster's records
        assert count_samples(con, 0, "[synthetic]") == N
        found = count_samples(con, 0, "astronomy")
        assert 0 < found < N
        assert len(browse_samples(con, 0, "astronomy", limit=50)) == min(50, found)
        assert con.execute("SELECT count(*) FROM projections WHERE iteration = 0").fetchall()[0][0] == N
    assert len(signals) == N and signals[["loss_pre", "loss_post", "diversity", "quality"]].notna().all().all()
    assert 4 < signals["quality"].median() < 9  # 0-10 ratings as a judge gives them
    assert (signals["loss_post"] < signals["loss_pre"]).mean() > 0.8
    flagged = tables.iteration_table(ws).iloc[-1]["union"]
    assert 0.05 * N < flagged < 0.35 * N


def test_every_page_reads_it(synth):
    ws = synth
    at = open_app(ws.root, "data")
    assert f"of {N:,} in D(0)" in texts(at)
    at.switch_page("app_pages/diagnose.py").run()
    assert not at.exception
    assert f"{N:,} samples of D(0) diagnosed" in texts(at)
    at.switch_page("app_pages/map.py").run()
    assert not at.exception
    assert at.get("plotly_chart")
    at.switch_page("app_pages/review.py").run()
    assert not at.exception
    assert f"0 of {P:,} decided" in texts(at)
    at.switch_page("app_pages/iterations.py").run()
    assert not at.exception
    assert len(at.dataframe) >= 2  # the paper's two tables

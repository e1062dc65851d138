"""The Map page after a diagnosis: a small D(i) is drawn with no click (the diagnosis made the map,
in the CLI's process or as a background job); a large one offers the button with the map's
length; points are sized for their number."""

from __future__ import annotations

import numpy as np
import pytest
from studio_helpers import open_app, texts

from app.components.map_view import map_figure, marker_size
from middo_core.diagnose import STAGE_MAP, diagnose
from middo_core.jobs import start_job
from middo_core.projections import load_projection, umap_seconds
from tests.app.test_map_jobs import wait_final
from tests.test_diagnose import fill, make_samples

SIGNALS = ("complexity", "diversity")


@pytest.fixture
def ws(workspace_factory, tiny_model):
    ws = workspace_factory("map_diag", base_model=tiny_model)
    fill(ws, make_samples(40))
    return ws


def test_after_a_small_diagnosis_the_map_is_drawn_without_a_click(ws):
    diagnose(ws, 0, signals=SIGNALS)
    at = open_app(ws.root, "map")
    assert not any(b.label.startswith("Compute") for b in at.button)
    assert len(at.get("plotly_chart")) == 1 and "Draw a lasso" in texts(at)


def test_above_the_limit_the_map_page_offers_the_map_and_says_how_long_it_takes(ws):
    diagnose(ws, 0, signals=SIGNALS, map_limit=20)
    at = open_app(ws.root, "map")
    shown = texts(at)
    assert "The diagnosis did not draw it: 40 samples, more than the 20 a diagnosis maps by itself" in shown
    assert f"(about {round(umap_seconds(40))} s for 40 samples)" in shown
    assert [b.label for b in at.button if b.label.startswith("Compute")] == ["Compute the UMAP map"]


@pytest.mark.slow  # a worker process: imports, the tiny model, UMAP's compilation
def test_a_diagnosis_job_draws_the_map_as_its_last_stage(ws):
    run_id = start_job(ws, "diagnose", 0, {"signals": list(SIGNALS)})
    final = wait_final(ws, run_id, timeout=300)
    assert final["status"] == "done", final["log_tail"]
    assert final["progress"]["stage"] == STAGE_MAP
    assert final["result"]["map"]["drawn"] and final["result"]["map"]["points"] == 40
    assert len(load_projection(ws, 0, "umap")) == 40


def drawn_marker_sizes(n: int) -> set[float]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    fig = map_figure(x, y, np.arange(n).astype(str).astype(object), np.full(n, "", dtype=object),
                     np.array(["not flagged"] * n, dtype=object), "flag", False, "map")
    return {t["marker"]["size"] for t in fig.figure["data"] if t["type"] == "scattergl"}


def test_points_are_big_when_few_and_small_when_many():
    assert min(drawn_marker_sizes(300)) >= 8  # the demo's few hundred samples are not specks
    assert max(drawn_marker_sizes(50_000)) <= 3.5
    assert 2 <= marker_size(100_000) <= 3

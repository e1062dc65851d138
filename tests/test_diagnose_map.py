"""The UMAP map drawn with a diagnosis: stored after the signals, reused when nothing changed,
left to the Map page above the limit, and never a reason for a diagnosis to fail."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from middo_core.diagnose import STAGE_MAP, STAGE_WRITE, diagnose
from middo_core.progress import Cancelled
from middo_core.projections import load_projection
from middo_core.store.iterations import get_iteration
from middo_core.store.signals import load_signals
from tests.test_diagnose import fill, make_samples

SIGNALS = ("complexity", "diversity")


@pytest.fixture
def ws(workspace_factory, tiny_model):
    ws = workspace_factory("diag_map", base_model=tiny_model)
    fill(ws, make_samples(30))
    return ws


def stored(ws, iteration: int = 0) -> tuple[int, dict]:
    """(signal rows, the stored diagnosis record) of D(iteration)."""
    with ws.store.read() as con:
        return len(load_signals(con, iteration)), get_iteration(con, iteration)["counts"]["diagnosis"]


def test_a_small_diagnosis_stores_its_map_after_the_signals(ws):
    stages = []
    rep = diagnose(ws, 0, signals=SIGNALS, progress=lambda ev: stages.append((ev.stage, ev.done, ev.total)))
    points = load_projection(ws, 0, "umap")
    assert len(points) == 30 and np.isfinite(points[["x", "y"]].to_numpy()).all()
    assert rep.map["drawn"] and rep.map["points"] == 30
    # the signals were written (and readable) before the map stage began; the map ran to its end
    written = stages.index((STAGE_WRITE, 1, 1))
    first_map = next(i for i, s in enumerate(stages) if s[0] == STAGE_MAP)
    assert written < first_map and stages[-1][0] == STAGE_MAP and stages[-1][1] == stages[-1][2]
    assert stored(ws) == (30, rep.to_dict())

    again = diagnose(ws, 0, signals=SIGNALS)  # same embeddings: the map is kept, not redrawn
    assert again.computed["post"] == 0 and again.map["reused"]
    assert load_projection(ws, 0, "umap")[["x", "y"]].equals(points[["x", "y"]])


def test_above_the_limit_the_map_is_left_to_the_map_page(ws):
    rep = diagnose(ws, 0, signals=SIGNALS, map_limit=29)
    assert load_projection(ws, 0, "umap").empty
    assert rep.map["drawn"] is False and "compute the map on the Map page" in rep.map["reason"]
    rows, record = stored(ws)
    assert rows == 30 and record["map"] == rep.map


def test_a_map_that_fails_leaves_the_diagnosis_stored_and_says_why(workspace_factory, tiny_model, caplog):
    ws = workspace_factory("too_few", base_model=tiny_model)
    fill(ws, make_samples(4))  # a UMAP map needs at least 5 points
    with caplog.at_level(logging.WARNING, logger="middo.diagnose"):
        rep = diagnose(ws, 0, signals=SIGNALS)
    assert rep.map["drawn"] is False and "at least 5 samples" in rep.map["reason"]
    assert "its map was not drawn: a map needs at least 5 samples" in caplog.text
    rows, record = stored(ws)
    assert rows == 4 and record["map"] == rep.map
    with ws.store.read() as con:
        assert get_iteration(con, 0)["status"] == "diagnosed"


def test_a_cancel_during_the_map_stops_the_run_with_the_signals_kept(ws):
    def cancel_in_map(ev):
        if ev.stage == STAGE_MAP:
            raise Cancelled()

    with pytest.raises(Cancelled):
        diagnose(ws, 0, signals=SIGNALS, progress=cancel_in_map)
    assert load_projection(ws, 0, "umap").empty
    assert stored(ws)[0] == 30


def test_a_diagnosis_without_embeddings_draws_no_map(ws):
    rep = diagnose(ws, 0, signals=("complexity",))
    assert rep.map == {} and load_projection(ws, 0, "umap").empty


def test_the_cli_says_what_became_of_the_map(ws):
    from typer.testing import CliRunner

    from middo_core.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "complexity,diversity"])
    assert first.exit_code == 0, first.output
    assert re.search(r"map: UMAP of 30 points drawn in [\d.]+ s", first.output)
    again = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "complexity,diversity", "--json"])
    assert json.loads(again.stdout)["map"] == {"drawn": True, "points": 30, "seconds": 0.0, "reused": True}

"""`middo refine` on a real workspace against a real loopback endpoint."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.store.iterations import get_iteration, upsert_iteration
from middo_core.store.proposals import list_proposals

runner = CliRunner()


def _select(ws, flagged):
    with ws.store.write() as con:
        upsert_iteration(con, 1, status="selected", counts={"flagged_ids": flagged})


def test_dry_run_then_run_from_the_stored_selection(refine_ws, loopback, api_key):
    ids = refine_ws.ids
    _select(refine_ws, {"complexity": ids[:2], "diversity": [ids[3]], "quality": [ids[0]]})
    base = ["refine", str(refine_ws.root), "--iteration", "1", "--backend", "openai",
            "--model", "loopback-model", "--variant", "full", "--json"]
    dry = runner.invoke(app, base + ["--dry-run"])
    assert dry.exit_code == 0, dry.output
    est = json.loads(dry.stdout)["estimate"]
    assert est["proposals"] == 4 and est["calls"] == 8 and loopback.count == 0
    done = runner.invoke(app, base + ["--axes", "complexity,diversity"])
    assert done.exit_code == 0, done.output
    rep = json.loads(done.stdout)
    assert rep["created"] == {"complexity": 2, "diversity": 1} and loopback.count == 6
    with refine_ws.store.read() as con:
        assert len(list_proposals(con, 1)) == 3
        # only two of three axes were asked for: the quality proposal is still to come
        assert get_iteration(con, 1)["counts"]["proposals"] == {"complexity": 2, "diversity": 1}


def test_flagged_sets_from_thresholds_on_stored_signals(refine_ws, loopback, api_key):
    ids = refine_ws.ids
    with refine_ws.store.write() as con:
        for i, sid in enumerate(ids):
            con.execute("""UPDATE signals SET loss_pre = ?, loss_post = ?, diversity = ?, quality = ?
                           WHERE iteration = 1 AND sample_id = ?""",
                        [10.0 if i == 0 else 1.0, 9.0 if i == 0 else 1.0,
                         0.1 if i == 1 else 0.9, 1.0 if i == 2 else 8.0, sid])
    result = runner.invoke(app, ["refine", str(refine_ws.root), "--iteration", "1", "--backend",
                                 "openai", "--model", "loopback-model", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["planned"] == {"complexity": 1, "quality": 1} and rep["left_by_limit"] == 1
    with refine_ws.store.read() as con:
        frame = list_proposals(con, 1)
    assert sorted(zip(frame["axis"], frame["source_id"], strict=True)) == [
        ("complexity", ids[0]), ("quality", ids[2])]


def test_bad_arguments_get_one_clear_sentence(refine_ws):
    result = runner.invoke(app, ["refine", str(refine_ws.root), "--axes", "style"])
    assert result.exit_code == 1 and "unknown axis style" in result.output
    result = runner.invoke(app, ["refine", str(refine_ws.root), "--iteration", "7", "--dry-run"])
    assert result.exit_code == 1 and "no flagged samples for iteration 7" in result.output


def test_background_job_kind_runs_the_stored_selection(refine_ws, loopback, api_key):
    from middo_core.refine.job import refine_job

    _select(refine_ws, {"complexity": refine_ws.ids[:2], "quality": [], "diversity": []})
    events = []
    result = refine_job(refine_ws, "refine-test", 1,
                        {"backend": "openai", "model": "loopback-model", "variant": "full"},
                        events.append)
    assert result["created"] == {"complexity": 2} and loopback.count == 4
    assert events and events[-1].done == events[-1].total == 2
    try:
        from middo_core.jobs.kinds import get_job_kind
    except ModuleNotFoundError:
        return
    assert get_job_kind("refine") is refine_job


def test_background_refine_from_the_cli_reaches_the_endpoint_without_storing_the_key(
        refine_ws, loopback, api_key):
    import time

    from middo_core.jobs import job_status

    _select(refine_ws, {"complexity": refine_ws.ids[:2], "quality": [], "diversity": []})
    started = runner.invoke(app, ["refine", str(refine_ws.root), "--iteration", "1", "--backend",
                                  "openai", "--model", "loopback-model", "--background", "--json"])
    assert started.exit_code == 0, started.output
    run_id = json.loads(started.stdout)["run_id"]
    deadline = time.monotonic() + 120
    while (status := job_status(refine_ws, run_id))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the refine job did not finish"
        time.sleep(0.2)
    assert status["status"] == "done", status["log_tail"]
    assert status["result"]["created"] == {"complexity": 2} and loopback.count == 4
    with refine_ws.store.read() as con:
        args = con.execute("SELECT args FROM runs WHERE id = ?", [run_id]).fetchall()[0][0]
    assert api_key not in args  # the worker read the key from its environment

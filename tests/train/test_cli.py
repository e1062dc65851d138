"""`middo train`, `middo evaluate`, `middo runs`, `middo cancel` as a user types them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from middo_core.cli import app

runner = CliRunner()


def test_train_evaluate_and_runs_from_the_command_line(small_workspace):
    ws = small_workspace()
    res = runner.invoke(app, ["train", str(ws.root), "--epochs", "0.25", "--json"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)
    assert trained["steps"] == 3 and trained["plan"]["epochs"] == 0.25

    res = runner.invoke(app, ["evaluate", str(ws.root), "--suite", "heldout,demo_exact", "--json"])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    assert results["heldout"]["metrics"]["loss"] > 0 and results["demo_exact"]["skipped"]

    res = runner.invoke(app, ["evaluate", str(ws.root), "--suite", "mmlux"])
    assert res.exit_code == 1 and "unknown evaluator mmlux" in res.output

    res = runner.invoke(app, ["train", str(ws.root), "--method", "qlora"])
    assert res.exit_code == 1 and "'full' or 'lora'" in res.output

    res = runner.invoke(app, ["runs", str(ws.root)])
    assert res.exit_code == 0 and "No runs yet." in res.output


def test_background_job_listed_and_cancelled(small_workspace):
    ws = small_workspace(repeat=10)
    res = runner.invoke(app, ["train", str(ws.root), "--batch-size", "1", "--background", "--json"])
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.stdout)["run_id"]
    res = runner.invoke(app, ["runs", str(ws.root), "--json"])
    assert [r["id"] for r in json.loads(res.stdout)] == [run_id]
    res = runner.invoke(app, ["cancel", str(ws.root), run_id, "--grace", "30"])
    assert res.exit_code == 0 and f"run {run_id}: cancelled" in res.output
    res = runner.invoke(app, ["runs", str(ws.root)])
    assert "cancelled" in res.output

"""Background jobs in real worker processes: progress, results, cancel, dead workers, resume."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from middo_core.jobs import cancel_job, get_job_kind, job_kinds, job_status, list_jobs, start_job
from middo_core.jobs.kinds import UnknownJobKind
from middo_core.jobs.runfiles import PROCESS_FILE, run_dir

SLOW_TRAIN = {"overrides": {"batch_size": 1, "checkpoints_per_epoch": 6}}  # 120 steps
RESUME_TRAIN = {"overrides": {"batch_size": 2, "checkpoints_per_epoch": 6}}  # 24 steps, saved every 4


def _wait(predicate, timeout: float = 180.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _pid(ws, run_id) -> int:
    return json.loads((run_dir(ws, run_id) / PROCESS_FILE).read_text())["pid"]


def test_background_training_reports_progress_and_finishes(small_workspace):
    ws = small_workspace()
    run_id = start_job(ws, "train", 0, {"overrides": {"epochs": 0.5}})
    final = _wait(lambda: (s := job_status(ws, run_id))["status"] in ("done", "failed") and s,
                  what="the training job to finish")
    assert final["status"] == "done", final["log_tail"]
    assert final["progress"]["stage"] == "train" and final["progress"]["done"] == final["progress"]["total"] == 5
    assert final["progress"]["loss"] is not None and final["progress"]["updated_at"] > 0
    assert final["result"]["steps"] == 5 and final["result"]["checkpoint"].endswith("iter_0")
    assert final["finished_at"] is not None
    _wait(lambda: not job_status(ws, run_id)["alive"], 30, "the worker to exit")
    assert any("done" in line for line in final["log_tail"])
    listed = list_jobs(ws)
    assert [(r["id"], r["kind"], r["iteration"], r["status"]) for r in listed] == [(run_id, "train", 0, "done")]


def test_a_running_job_can_be_cancelled(small_workspace):
    ws = small_workspace(repeat=10)
    run_id = start_job(ws, "train", 0, SLOW_TRAIN)
    _wait(lambda: (job_status(ws, run_id)["progress"] or {}).get("step"), what="the first step")
    status = cancel_job(ws, run_id, grace_s=30)
    assert status["status"] == "cancelled" and status["alive"] is False
    assert not (ws.artifacts / "checkpoints" / "iter_0").exists()  # no model was recorded


def test_a_dead_worker_is_reported_as_failed(small_workspace):
    ws = small_workspace(repeat=10)
    run_id = start_job(ws, "train", 0, SLOW_TRAIN)
    _wait(lambda: job_status(ws, run_id)["status"] == "running", what="the worker to start")
    os.kill(_pid(ws, run_id), signal.SIGKILL)
    status = _wait(lambda: (s := job_status(ws, run_id))["status"] != "running" and s, 30, "death")
    assert status["status"] == "failed" and status["error"] == "failed: process died"
    assert job_status(ws, run_id)["status"] == "failed"  # recorded in the store, not only reported


@pytest.mark.slow
def test_training_resumes_from_the_last_checkpoint_after_sigkill(small_workspace):
    from middo_core.train import train

    ws = small_workspace(repeat=4)
    run_id = start_job(ws, "train", 0, RESUME_TRAIN)
    work = ws.artifacts / "checkpoints" / "iter_0.work"

    def saved_step():
        done = [int(p.name.split("-")[1]) for p in work.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        return max(done) if done else None

    _wait(saved_step, what="a first intermediate checkpoint")
    os.kill(_pid(ws, run_id), signal.SIGKILL)
    time.sleep(0.5)
    saved = saved_step()
    assert saved is not None and saved > 0
    events = []
    result = train(ws, 0, progress=events.append, overrides=RESUME_TRAIN["overrides"])
    assert result.resumed_from_step == saved
    steps = [e.step for e in events if getattr(e, "step", None)]
    assert min(steps) >= saved and steps[-1] == result.steps == 24
    assert any(e.message == f"resumed from step {saved}" for e in events)
    assert not work.exists()


def test_every_kind_in_the_table_resolves_and_an_unknown_one_is_refused(small_workspace):
    ws = small_workspace()
    with pytest.raises(UnknownJobKind, match="unknown job kind 'compile'"):
        start_job(ws, "compile", 0, {})
    with ws.store.read() as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 0  # nothing recorded
    for kind in job_kinds():
        assert callable(get_job_kind(kind)), kind


def test_evaluation_runs_as_a_job(small_workspace, tiny_model):
    ws = small_workspace()
    run_id = start_job(ws, "evaluate", 0, {"suite": ["heldout"], "model": tiny_model})
    final = _wait(lambda: (s := job_status(ws, run_id))["status"] in ("done", "failed") and s)
    assert final["status"] == "done", final["log_tail"]
    assert final["result"]["results"]["heldout"]["metrics"]["loss"] > 0

"""Iteration 0 starts by itself only on a fresh workspace that asks for it (the built-in demo)."""

from __future__ import annotations

import threading
import time

from middo_core.data.demo import create_demo_workspace
from middo_core.jobs import cancel_job, job_status
from middo_core.loop import autostart, autostart_due, first_iteration, step_states
from middo_core.store.runs import list_runs


def demo(tmp_path, tiny_model, name: str = "demo"):
    ws = create_demo_workspace(tmp_path / name, size=60)
    ws.config.base_model = tiny_model
    ws.save_config()
    return ws


def runs(ws) -> list[str]:
    with ws.store.read() as con:
        return list(list_runs(con)["kind"])


def test_the_demo_asks_for_it_a_plain_workspace_does_not(tmp_path, tiny_model, workspace_factory):
    assert autostart_due(demo(tmp_path, tiny_model))
    plain = workspace_factory("plain")
    assert not plain.config.loop.autostart
    assert autostart(plain) is None and runs(plain) == []


def test_one_run_for_two_sessions_and_none_again_after_a_cancel(tmp_path, tiny_model):
    ws = demo(tmp_path, tiny_model)
    started: list[str | None] = []
    sessions = [threading.Thread(target=lambda: started.append(autostart(ws))) for _ in range(2)]
    for t in sessions:
        t.start()
    for t in sessions:
        t.join()
    run_ids = [r for r in started if r]
    assert len(run_ids) == 1 and runs(ws) == ["first_iteration"]
    deadline = time.monotonic() + 60
    while (job_status(ws, run_ids[0])["progress"] or {}).get("stage") is None:
        assert time.monotonic() < deadline, "the run never reported progress"
        time.sleep(0.2)
    assert job_status(ws, run_ids[0])["progress"]["stage"].startswith("step 1 of 3, train M(0)")
    assert cancel_job(ws, run_ids[0])["status"] == "cancelled"
    # the workspace has work in it now (a cancelled run): opening it again starts nothing
    assert not autostart_due(ws) and autostart(ws) is None
    assert runs(ws) == ["first_iteration"]


def test_first_iteration_trains_diagnoses_and_evaluates_with_its_steps_in_the_progress(tmp_path, tiny_model):
    ws = demo(tmp_path, tiny_model)
    stages: list[str] = []
    assert first_iteration(ws, lambda e: stages.append(e.stage)) == ["train", "diagnose", "evaluate"]
    assert all(step_states(ws, 0)[s] for s in ("trained", "diagnosed", "evaluated"))
    steps = list(dict.fromkeys(s.split(" · ")[0] for s in stages))
    assert steps == ["step 1 of 3, train M(0)", "step 2 of 3, diagnose D(0)", "step 3 of 3, evaluate M(0)"]
    assert not autostart_due(ws)  # M(0) is trained: nothing to start
    assert first_iteration(ws) == []  # every step done: nothing runs twice


def test_active_jobs_lists_only_the_running_ones(tmp_path, tiny_model):
    from middo_core.jobs import active_jobs

    ws = demo(tmp_path, tiny_model)
    assert active_jobs(ws) == []
    run_id = autostart(ws)
    assert [s["id"] for s in active_jobs(ws)] == [run_id]
    cancel_job(ws, run_id)
    assert active_jobs(ws) == []

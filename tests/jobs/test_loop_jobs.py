"""The loop and diagnosis run as background jobs (real worker processes)."""

from __future__ import annotations

import time

import pytest

from middo_core.data import create_demo_workspace
from middo_core.jobs import job_status, start_job
from middo_core.store.signals import count_signals

pytestmark = pytest.mark.slow


def wait(ws, run_id, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = job_status(ws, run_id)
        if st["status"] in ("done", "failed", "cancelled"):
            return st
        time.sleep(0.5)
    raise AssertionError(f"job {run_id} still running after {timeout} s")


def test_diagnosis_runs_as_a_background_job(tmp_path, tiny_model):
    ws = create_demo_workspace(tmp_path / "demo", size=40)
    ws.config.base_model = tiny_model
    ws.config.signals.max_len = 96
    ws.save_config()
    run_id = start_job(ws, "diagnose", 0, {"post_model": tiny_model, "signals": ["complexity", "diversity"]})
    st = wait(ws, run_id)
    assert st["status"] == "done", st
    with ws.store.read() as con:
        assert count_signals(con, 0) > 0

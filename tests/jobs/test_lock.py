"""The workspace's run lock: refused while its owner runs (with who and since when), taken over
once the owner is gone or its pid belongs to another process, re-entrant in one process, handed
from start_job to the job's worker and given up when the job ends."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time

import pytest

from middo_core.jobs import cancel_job, job_status, start_job
from middo_core.jobs.lock import (
    RunLocked,
    acquire,
    holder,
    lock_path,
    process_identity,
    release,
    run_lock,
)
from middo_core.jobs.runfiles import PROCESS_FILE, read_json, run_dir


@pytest.fixture
def other_process():
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def plant(ws, identity: dict, host: str | None = None, **extra) -> None:
    owner = {**identity, "host": host or socket.gethostname(), "kind": "loop",
             "command": f"middo loop {ws.root} --iterations 1", "run_id": None, "since": time.time() - 90}
    lock_path(ws).parent.mkdir(parents=True, exist_ok=True)
    lock_path(ws).write_text(json.dumps({**owner, **extra}))


def test_refused_while_the_owner_runs_and_taken_over_once_it_is_gone(workspace_factory, other_process):
    ws = workspace_factory()
    plant(ws, process_identity(other_process.pid))
    with pytest.raises(RunLocked) as refused:
        acquire(ws, "train", "middo train")
    text = str(refused.value)
    assert f"in use by `middo loop {ws.root} --iterations 1` (pid {other_process.pid} on " in text
    assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(1 min ago\)", text)
    assert f"`kill {other_process.pid}`" in text and "run this again" in text
    assert holder(ws)["pid"] == other_process.pid
    other_process.kill()
    other_process.wait()
    assert holder(ws) is None
    owner = acquire(ws, "train", "middo train")
    assert owner["reclaimed"]["pid"] == other_process.pid and holder(ws)["command"] == "middo train"
    release(ws)
    assert not lock_path(ws).exists()


def test_a_recycled_pid_does_not_hold_it_another_host_does(workspace_factory, other_process):
    ws = workspace_factory()
    identity = process_identity(other_process.pid)
    plant(ws, {**identity, "create_time": identity["create_time"] - 1000})  # same pid, older process
    assert holder(ws) is None
    with run_lock(ws, "loop"):
        pass
    plant(ws, {"pid": 1, "create_time": 0.0}, host="elsewhere")
    with pytest.raises(RunLocked, match=f"another host; if it is gone, delete {lock_path(ws)}"):
        acquire(ws, "loop")


def test_re_entrant_in_one_thread_refused_in_another(workspace_factory):
    ws = workspace_factory()
    refused: list[BaseException] = []

    def other_session():  # another Studio session: a thread of the same process
        try:
            acquire(ws, "train", "Studio: train")
        except RunLocked as exc:
            refused.append(exc)

    with run_lock(ws, "build", "Studio: build D(1)"):
        with run_lock(ws, "build", "middo build"):  # nested in the same call stack
            assert holder(ws)["command"] == "Studio: build D(1)"
        session = threading.Thread(target=other_session)
        session.start()
        session.join()
        assert lock_path(ws).exists()
    assert len(refused) == 1 and "in use by `Studio: build D(1)`" in str(refused[0])
    assert not lock_path(ws).exists()


def test_a_job_holds_it_in_its_worker_until_it_ends(small_workspace):
    ws = small_workspace(repeat=10)
    run_id = start_job(ws, "train", 0, {"overrides": {"batch_size": 1, "checkpoints_per_epoch": 6}})
    pid = read_json(run_dir(ws, run_id) / PROCESS_FILE)["pid"]
    deadline = time.monotonic() + 60
    while (holder(ws) or {}).get("pid") != pid:  # handed over by start_job, adopted by the worker
        assert time.monotonic() < deadline, holder(ws)
        time.sleep(0.1)
    assert holder(ws)["run_id"] == run_id
    with pytest.raises(RunLocked, match=f"the background train job {run_id} .*`middo cancel {ws.root} {run_id}`"):
        start_job(ws, "diagnose", 0, {})
    assert [r for r in [job_status(ws, run_id)] if r["status"] in ("queued", "running")]
    assert cancel_job(ws, run_id, grace_s=30)["status"] == "cancelled"
    assert holder(ws) is None and not lock_path(ws).exists()

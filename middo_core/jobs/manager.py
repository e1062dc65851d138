"""Start, follow and cancel background jobs. Each job is its own process:
`python -m middo_core.jobs.worker <workspace> <run_id>`, in its own session, logging to its run
folder. The run record lives in the store (table runs); live progress in the run folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from middo_core.access import Actor, check, run_action
from middo_core.files import disk_full, disk_full_message, nearly_full
from middo_core.jobs import lock, runfiles
from middo_core.jobs.kinds import get_job_kind
from middo_core.jobs.lock import process_alive as _alive
from middo_core.jobs.lock import process_identity as _identity
from middo_core.store import runs as run_store
from middo_core.store.audit import record
from middo_core.workspace import Workspace

ACTIVE = ("queued", "running")
DIED = "process died"
CANCEL_GRACE_S = 10.0
STARTING_S = 30.0


class JobError(RuntimeError):
    pass


def start_job(ws: Workspace, kind: str, iteration: int | None, args: dict[str, Any] | None = None,
              actor: Actor = "cli") -> str:
    """Launch a worker for a `kind` job; returns its run id at once. A kind that writes models or
    datasets (lock.WRITERS) takes the workspace's run lock first: lock.RunLocked, and nothing
    recorded, while another run holds it. `actor` must be allowed to start it (access.py)."""
    get_job_kind(kind)  # refuse an unknown kind (or a broken install) here, not in a log file later
    actor = check(ws, actor, run_action(kind))
    args = dict(args or {})
    args["_actor"] = actor  # hidden from the status (a leading _), read by runs that store things
    json.dumps(args)  # job arguments must survive the trip through the store
    # a process already holding the lock (a CLI command) covers the jobs it starts itself
    locking = kind in lock.WRITERS and not lock.held_here(ws)
    if locking:
        lock.acquire(ws, kind, f"{kind} job")
        args["_run_lock"] = True  # the worker adopts the lock handed to it
    try:
        with ws.store.write() as con:
            run_id = run_store.create_run(con, kind, iteration, args)
            record(con, actor, f"run:{kind}", iteration, run_id)
        folder = runfiles.run_dir(ws, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        with (folder / runfiles.LOG_FILE).open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "middo_core.jobs.worker", str(ws.root), run_id],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=str(ws.root), env=env,
            )
    except BaseException:
        if locking:
            lock.release(ws)
        raise
    if locking:
        lock.hand_over(ws, proc.pid, run_id)
    runfiles.write_json_atomic(folder / runfiles.PROCESS_FILE, _identity(proc.pid))
    return run_id


def job_status(ws: Workspace, run_id: str, log_lines: int = 20) -> dict[str, Any]:
    """The run record, its live progress, the last log lines and whether its process is alive.
    A queued or running run whose process is gone is marked failed ("process died")."""
    with ws.store.read() as con:
        record = run_store.get_run(con, run_id)
    if record is None:
        raise JobError(f"no run '{run_id}' in {ws.root}")
    folder = runfiles.run_dir(ws, run_id)
    identity = runfiles.read_json(folder / runfiles.PROCESS_FILE)
    alive = _alive(identity)
    if identity is None and _age_s(folder) < STARTING_S:
        alive = True  # start_job is between launching the worker and recording its pid
    if record["status"] in ACTIVE and not alive:
        time.sleep(0.2)  # the worker may be writing its final status right now
        record = _end_dead_run(ws, run_id, folder)
    out = {k: _plain(v) for k, v in record.items()}
    out["args"] = {k: v for k, v in json.loads(record.get("args") or "{}").items() if not k.startswith("_")}
    out["progress"] = runfiles.read_json(folder / runfiles.PROGRESS_FILE)
    out["result"] = runfiles.read_json(folder / runfiles.RESULT_FILE)
    out["log_tail"] = runfiles.log_tail(folder / runfiles.LOG_FILE, log_lines)
    out["log_path"] = str(folder / runfiles.LOG_FILE)
    out["alive"] = alive
    if out["status"] == "failed" and out.get("error") == DIED:
        out["error"] = f"failed: {DIED}"
    return out


def _end_dead_run(ws: Workspace, run_id: str, folder) -> dict[str, Any]:
    """Records the end of a run whose process is gone: cancelled if asked to, else failed with the
    error its worker logged (a failure the store could not take, say on a full disk) or DIED.
    While a full disk keeps the store from taking it, the ending is reported, and recorded by a
    later look."""
    if runfiles.cancel_requested(folder):
        final, error = "cancelled", None
    else:
        final, error = "failed", runfiles.logged_failure(folder / runfiles.LOG_FILE, run_id)
        if error is None:  # nothing logged: a kill, or a disk too full to take the log line
            error = DIED
            if nearly_full(ws.root):
                error = f"{DIED}; {disk_full_message(OSError(errno.ENOSPC, 'full'), ws.root)}"
    try:
        with ws.store.write() as con:
            fresh = run_store.get_run(con, run_id)
            if fresh["status"] in ACTIVE:
                run_store.set_run(con, run_id, final, error=error)
            return run_store.get_run(con, run_id)
    except Exception as exc:
        if not disk_full(exc):
            raise
        with ws.store.read() as con:
            record = run_store.get_run(con, run_id)
        if record["status"] in ACTIVE:
            record = {**record, "status": final, "error": error}
        return record


def _age_s(folder) -> float:
    try:
        return time.time() - folder.stat().st_mtime
    except OSError:
        return float("inf")


def _plain(value: Any) -> Any:
    """pandas/numpy scalars and NaT/NaN to plain Python (JSON and templates)."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        try:
            return None if value != value else value.isoformat()
        except (TypeError, ValueError):
            return str(value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def list_jobs(ws: Workspace, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first, with progress; active runs are checked for a dead process."""
    with ws.store.read() as con:
        ids = list(run_store.list_runs(con, limit)["id"])
    return [job_status(ws, run_id, log_lines=0) for run_id in ids]


def active_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """The queued and running runs, each checked for a dead process (which marks it failed)."""
    with ws.store.read() as con:
        ids = run_store.active_run_ids(con)
    return [s for s in (job_status(ws, run_id, log_lines=0) for run_id in ids) if s["status"] in ACTIVE]


def cancel_job(ws: Workspace, run_id: str, grace_s: float = CANCEL_GRACE_S,
               actor: Actor = "cli") -> dict[str, Any]:
    """Ask the worker to stop (it checks between steps), then SIGTERM its process group if it
    has not stopped within `grace_s`. Returns the final status."""
    status = job_status(ws, run_id, log_lines=0)
    if status["status"] not in ACTIVE:
        return status
    actor = check(ws, actor, run_action(status["kind"]))
    with ws.store.write() as con:
        record(con, actor, f"cancel:{status['kind']}", status.get("iteration"), run_id)
    folder = runfiles.run_dir(ws, run_id)
    runfiles.request_cancel(folder)
    identity = runfiles.read_json(folder / runfiles.PROCESS_FILE)
    if not _wait_exit(identity, grace_s) and identity:
        _signal_group(int(identity["pid"]), signal.SIGTERM)
        if not _wait_exit(identity, 10.0):
            _signal_group(int(identity["pid"]), signal.SIGKILL)
            _wait_exit(identity, 5.0)
    return job_status(ws, run_id, log_lines=0)


def _signal_group(pid: int, sig: int) -> None:
    # the worker leads its own session: this reaches its children (torchrun ranks) too
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_exit(identity: dict[str, Any] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(identity):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True

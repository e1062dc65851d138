"""The workspace's run lock: one run that writes models or datasets at a time.

Two loops on one workspace would train M(i) into the same checkpoint folder at once and build the
same D(i+1) twice. So `middo loop`, the other CLI commands that train, diagnose, refine or build,
the Studio's build and every background job of a WRITER kind take this lock first; a second one
is refused with who holds it (pid, host, command or run) and since when. Reading (status,
tables, diff, export, the Studio's pages) never takes it.

The lock is `artifacts/run.lock`, a JSON record of its owner. A short flock on a guard file makes
each read-check-write atomic across processes. The owner is alive while a process with its pid and
its start time runs (a recycled pid has another start time); a lock whose owner is gone (killed)
is taken over by the next run. An owner on another host cannot be checked from here: it is held
until it is released or the file is deleted. A background job's lock is handed from the process
that starts it to its worker, and released when the worker ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from middo_core.files import write_text_atomic
from middo_core.progress import format_duration
from middo_core.workspace import Workspace

LOCK_FILE = "run.lock"
GUARD_FILE = ".run.lock.guard"
# the job kinds that write models or datasets; evaluate, projection and import do not take it
WRITERS = frozenset({"train", "train-nodes", "loop", "first_iteration", "diagnose", "refine"})

# lock path -> how many times this thread holds it: re-entrant along one call stack, while the
# Studio's other sessions (threads of the same process) are refused like other processes
_held = threading.local()


def _depth() -> dict[Path, int]:
    if not hasattr(_held, "depth"):
        _held.depth = {}
    return _held.depth


class RunLocked(RuntimeError):
    """Another live run holds the workspace; the message says who, since when, what to do."""

    def __init__(self, root: Path, owner: dict[str, Any], path: Path) -> None:
        self.owner = owner
        super().__init__(describe_refusal(root, owner, path))


def lock_path(ws: Workspace) -> Path:
    return ws.artifacts / LOCK_FILE


def process_identity(pid: int) -> dict[str, Any]:
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    return {"pid": pid, "create_time": created}


def process_alive(identity: dict[str, Any] | None) -> bool:
    """The recorded process still runs (not a zombie, not a new process reusing the pid)."""
    import psutil

    if not identity or not identity.get("pid"):
        return False
    try:
        proc = psutil.Process(int(identity["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = identity.get("create_time")
        return created is None or abs(proc.create_time() - created) < 1.0
    except psutil.Error:
        return False


def holder(ws: Workspace) -> dict[str, Any] | None:
    """The owner of the lock while it is alive (or on another host), else None."""
    owner = _read(lock_path(ws))
    return owner if _live(owner) else None


@contextlib.contextmanager
def run_lock(ws: Workspace, kind: str, command: str | None = None) -> Iterator[dict[str, Any]]:
    """Hold the lock for the block (re-entrant in one thread); RunLocked when another holds it."""
    owner = acquire(ws, kind, command)
    try:
        yield owner
    finally:
        release(ws)


def acquire(ws: Workspace, kind: str, command: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Take the lock for this process, or raise RunLocked naming the live owner. A lock left by a
    process that no longer runs is taken over; its record is returned under "reclaimed"."""
    path = lock_path(ws)
    with _guard(ws):
        owner = _read(path)
        depth = _depth()
        if _mine(owner) and depth.get(path, 0) > 0:
            depth[path] += 1
            return owner
        if _live(owner):
            raise RunLocked(ws.root, owner, path)
        mine = {**process_identity(os.getpid()), "host": socket.gethostname(), "kind": kind,
                "command": command or kind, "run_id": run_id, "since": time.time()}
        write_text_atomic(path, json.dumps(mine))
        depth[path] = 1
    return {**mine, "reclaimed": owner} if owner else mine


def release(ws: Workspace) -> None:
    """Give the lock up (once the outermost holder in this process lets go)."""
    path, depth = lock_path(ws), _depth()
    if depth.get(path, 0) > 1:
        depth[path] -= 1
        return
    depth.pop(path, None)
    with _guard(ws):
        if _mine(_read(path)):
            path.unlink(missing_ok=True)


def held_here(ws: Workspace) -> bool:
    """This thread holds the lock now (it covers the jobs this thread starts)."""
    return _depth().get(lock_path(ws), 0) > 0


def hand_over(ws: Workspace, pid: int, run_id: str) -> None:
    """Pass the lock this process took for a job to the job's worker process."""
    path = lock_path(ws)
    with _guard(ws):
        owner = _read(path)
        if _mine(owner):
            write_text_atomic(path, json.dumps({**owner, **process_identity(pid), "run_id": run_id}))
    _depth().pop(path, None)


def adopt(ws: Workspace, run_id: str) -> None:
    """In a job's worker: hold the lock handed to this run (RunLocked if another run has it)."""
    path = lock_path(ws)
    with _guard(ws):
        owner = _read(path)
        # the starter may not have handed it over yet: it is then still the starter's, our parent's
        handed = owner is not None and (owner.get("run_id") == run_id or owner.get("pid") == os.getppid())
        if not handed:
            if _live(owner):
                raise RunLocked(ws.root, owner, path)
            raise RuntimeError(f"run {run_id}: its lock ({path}) was lost before the worker started")
        write_text_atomic(path, json.dumps({**owner, **process_identity(os.getpid()), "run_id": run_id}))
        _depth()[path] = 1


def describe(owner: dict[str, Any]) -> str:
    """Who holds it, in words: "`middo loop runs/a --iterations 1` (pid 4242 on host-a)"."""
    what = (f"the background {owner.get('kind')} job {owner['run_id']}" if owner.get("run_id")
            else f"`{owner.get('command') or owner.get('kind')}`")
    return f"{what} (pid {owner.get('pid')} on {owner.get('host')})"


def describe_refusal(root: Path, owner: dict[str, Any], path: Path) -> str:
    since = float(owner.get("since") or 0)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    ago = format_duration(time.time() - since)
    text = (f"{root} is in use by {describe(owner)} since {when} ({ago} ago); "
            "it trains, diagnoses, refines or builds, and a second run would write over its work. "
            "Wait for it to finish, or stop it (")
    text += (f"`middo cancel {root} {owner['run_id']}`" if owner.get("run_id")
             else f"Ctrl-C in its terminal, or `kill {owner.get('pid')}`")
    text += "), then run this again. Reading the workspace (status, tables, diff, export, the Studio's pages) works meanwhile."
    if owner.get("host") != socket.gethostname():
        text += f" It runs on another host; if it is gone, delete {path}."
    return text


def _read(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or not a record (nothing to protect: it is taken over)
    return owner if isinstance(owner, dict) else None


def _live(owner: dict[str, Any] | None) -> bool:
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True  # its process cannot be checked from here
    return process_alive(owner)


def _mine(owner: dict[str, Any] | None) -> bool:
    return bool(owner) and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname() \
        and process_alive(owner)


@contextlib.contextmanager
def _guard(ws: Workspace) -> Iterator[None]:
    ws.artifacts.mkdir(parents=True, exist_ok=True)
    with open(ws.artifacts / GUARD_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # held for one read and one write: microseconds
        yield

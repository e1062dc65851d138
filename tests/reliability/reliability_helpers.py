"""Helpers for the reliability tests: real `middo` subprocesses, SIGKILL at a chosen moment, and
a consistency check of a workspace's store after the fact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PROPOSAL_STATUSES = {"pending", "accepted", "edited", "rejected", "failed"}


def middo_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def middo(*args: Any, env: dict[str, str] | None = None, timeout: float = 600,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run `middo ARGS` to completion in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "middo_core.cli", *map(str, args)], cwd=REPO,
                          env=env or middo_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"middo {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def start_middo(*args: Any, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `middo ARGS` in the background (own session), output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "middo_core.cli", *map(str, args)],
                                cwd=REPO, env=env or middo_env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 240.0, what: str = "condition",
             proc: subprocess.Popen | None = None, log: Path | None = None,
             interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail early if `proc` exits first (it finished before
    we could interrupt it, or it crashed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{tail}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill9(proc: subprocess.Popen | int) -> None:
    """SIGKILL: no handler, no cleanup, no flush."""
    pid = proc if isinstance(proc, int) else proc.pid
    assert _running(pid), "the process had already finished: the kill would prove nothing"
    os.kill(pid, signal.SIGKILL)
    if isinstance(proc, subprocess.Popen):
        proc.wait(timeout=30)
    else:
        wait_for(lambda: not _running(pid), 30, "the killed process to go")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def file_open_by(pid: int, path: Path) -> bool:
    """`path` is among the open files of process `pid` (Linux /proc)."""
    target = str(Path(path).resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def read_position(pid: int, path: Path) -> int:
    """How far process `pid` has read into `path` (its file offset; 0 when not open)."""
    target = str(Path(path).resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                continue
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("pos:"):
                    return int(line.split()[1])
        except OSError:
            continue
    return 0


def held_open(pid: int, path: Path, hold_s: float) -> Callable[[], bool]:
    """A predicate: true once `pid` has kept `path` open for `hold_s` without a break (a long
    write transaction, not one of the short opens around it)."""
    since: list[float | None] = [None]

    def check() -> bool:
        if not file_open_by(pid, path):
            since[0] = None
            return False
        if since[0] is None:
            since[0] = time.monotonic()
        return time.monotonic() - since[0] >= hold_s

    return check


# --- consistency of a store after a crash ------------------------------------------------------

def check_consistent(root: Path) -> dict[str, Any]:
    """Reopen the workspace the way the CLI does and check every cross-table invariant.

    Returns a summary (sizes per version, proposal statuses, counts) for further assertions.
    """
    from middo_core.sample import content_hash
    from middo_core.store.schema import SCHEMA_VERSION, current_version
    from middo_core.workspace import open_workspace

    ws = open_workspace(root)  # migrates: replays the WAL of a killed writer
    with ws.store.read() as con:
        assert current_version(con) == SCHEMA_VERSION
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"samples", "dataset_members", "iterations", "proposals", "review_log",
                "signals", "signal_cache", "runs", "metrics", "meta"} <= tables
        rows = con.execute(
            "SELECT id, system, history, instruction, input, output FROM samples").fetchall()
        for sid, system, history, instruction, input_, output in rows:
            assert instruction is not None and output is not None and str(output).strip(), sid
            assert sid == content_hash(system, json.loads(history), instruction, input_, output), \
                f"sample {sid} does not match its content (torn write?)"
        dup = con.execute("""SELECT count(*) FROM (SELECT iteration, sample_id FROM dataset_members
                             GROUP BY ALL HAVING count(*) > 1)""").fetchall()[0][0]
        assert dup == 0, "duplicated dataset members"
        orphans = con.execute("""SELECT count(*) FROM dataset_members m
                                 LEFT JOIN samples s ON s.id = m.sample_id WHERE s.id IS NULL""").fetchall()[0][0]
        assert orphans == 0, "dataset members without a sample"
        sizes = {int(i): int(n) for i, n in con.execute(
            "SELECT iteration, count(*) FROM dataset_members WHERE split = 'train' GROUP BY ALL").fetchall()}
        records = {int(n): (status, json.loads(counts)) for n, status, counts in con.execute(
            "SELECT number, status, counts FROM iterations").fetchall()}
        for version, size in sizes.items():
            if version == 0 or (version - 1) not in records:
                continue
            build = records[version - 1][1].get("build")
            if build is not None:  # a built version: exactly the size its build reported
                assert build["size_after"] == size, f"D({version}) half written: {size} != {build}"
                assert records[version][1].get("size") == size
        for number, (_, counts) in records.items():
            if "build" in counts:
                assert sizes.get(number + 1) == counts["build"]["size_after"], \
                    f"build of D({number + 1}) recorded but the version is missing or partial"
        stray_signals = con.execute("""SELECT count(*) FROM signals g LEFT JOIN dataset_members m
                ON m.iteration = g.iteration AND m.sample_id = g.sample_id WHERE m.sample_id IS NULL""").fetchall()[0][0]
        assert stray_signals == 0, "signal rows for samples outside their version"
        props = con.execute(
            "SELECT id, status, reason, instruction, output FROM proposals").fetchall()
        statuses: dict[str, int] = {}
        for pid, status, reason, instruction, output in props:
            assert status in PROPOSAL_STATUSES, (pid, status)
            if status == "failed":
                assert reason, f"failed proposal {pid} without a reason"
            else:
                assert instruction and output, f"{status} proposal {pid} with empty text"
            statuses[status] = statuses.get(status, 0) + 1
        undocumented = con.execute("""SELECT count(*) FROM proposals p WHERE p.status IN
                ('accepted', 'rejected', 'edited') AND NOT EXISTS
                (SELECT 1 FROM review_log r WHERE r.proposal_id = p.id AND r.action = p.status)""").fetchall()[0][0]
        assert undocumented == 0, "decisions without their audit-trail row"
        log_rows = con.execute("SELECT count(*) FROM review_log").fetchall()[0][0]
        for (payload,) in con.execute("SELECT payload FROM signal_cache").fetchall():
            json.loads(payload)  # every cached value is whole
        n_samples = len(rows)
    return {"sizes": sizes, "statuses": statuses, "samples": n_samples, "review_log": log_rows,
            "records": records}


# --- a small disk ------------------------------------------------------------------------------

@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """`folder` on a tmpfs of `size` ("8m") for the block (root only). A mount that fails fails
    the test: a skipped fault would count as tried."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs on {folder}: {mounted.stderr}"
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # busy: detach it anyway


def resize_disk(folder: Path, size: str) -> None:
    """Give a small disk more room (as a user who frees space would)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def fill_disk(folder: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free on `folder`'s disk; delete it to free
    the space again."""
    ballast = folder / "ballast"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    assert free > leave, f"{folder}: only {free} bytes free, cannot leave {leave}"
    with open(ballast, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - leave)
    return ballast


def run_job_here(ws, kind: str, iteration: int | None, args: dict[str, Any]) -> dict[str, Any]:
    """A background job of `kind` through the worker's own code, in this process; its record."""
    from middo_core.jobs import worker
    from middo_core.store import runs as run_store

    with ws.store.write() as con:
        run_id = run_store.create_run(con, kind, iteration, args)
    worker.run(ws.root, run_id)
    with ws.store.read() as con:
        return run_store.get_run(con, run_id)

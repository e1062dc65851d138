"""The background worker: `python -m middo_core.jobs.worker <workspace> <run_id>`.

It runs the job's function with a progress callback that writes the run folder's progress.json
and stops at a cancel request; it opens the store only briefly, at start and at the end.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import traceback
from pathlib import Path

from middo_core.files import disk_full, disk_full_message
from middo_core.progress import Cancelled


def _terminated(signum, frame):  # SIGTERM (cancel after the grace period): unwind cleanly
    raise Cancelled("terminated")


def _was_cancelled(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:  # libraries may wrap the Cancelled raised in their callbacks
        if isinstance(seen, Cancelled | KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _say(line: str) -> None:
    """A line in the run's log, unless the disk holding it is full too."""
    with contextlib.suppress(OSError):
        print(line, flush=True)


def run(workspace: Path, run_id: str) -> int:
    from middo_core.jobs import lock, runfiles
    from middo_core.jobs.kinds import get_job_kind
    from middo_core.store import runs as run_store
    from middo_core.workspace import open_workspace

    ws = open_workspace(workspace)
    with ws.store.write() as con:
        record = run_store.get_run(con, run_id)
        if record is None:
            print(f"no run {run_id} in {workspace}", file=sys.stderr)
            return 2
        run_store.set_run(con, run_id, "running")
    args = json.loads(record["args"] or "{}")
    args.pop("_module", None)  # recorded by earlier versions; the kinds table says it now
    locked = args.pop("_run_lock", False)  # start_job took the workspace's run lock for this run
    iteration = None if record["iteration"] != record["iteration"] or record["iteration"] is None \
        else int(record["iteration"])
    folder = runfiles.run_dir(ws, run_id)
    progress = runfiles.ProgressWriter.for_run(ws, run_id)
    print(f"run {run_id}: {record['kind']} iteration {iteration} args {args}", flush=True)
    try:
        if locked:
            lock.adopt(ws, run_id)
        fn = get_job_kind(record["kind"])
        result = fn(ws, run_id, iteration, args, progress)
        if result is not None:
            runfiles.write_json_atomic(folder / runfiles.RESULT_FILE, result)
    except BaseException as exc:  # noqa: BLE001 - every ending is recorded
        if _was_cancelled(exc) or runfiles.cancel_requested(folder):
            print(f"run {run_id}: cancelled", flush=True)
            with ws.store.write() as con:
                run_store.set_run(con, run_id, "cancelled")
            return 0
        with contextlib.suppress(OSError):  # a full disk may take no traceback either
            traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        if disk_full(exc):
            error = disk_full_message(exc, ws.root)
        # said in the log first, on one line: recording it in the store needs space too, and a
        # run whose record stays active is ended from this line once its process is gone
        _say(f"{runfiles.FAILED_LINE.format(run_id=run_id)}{' '.join(error.split())[:2000]}")
        try:
            with ws.store.write() as con:
                run_store.set_run(con, run_id, "failed", error=error[:2000])
        except Exception as unrecorded:  # noqa: BLE001 - the log line above stands for it
            _say(f"run {run_id}: the store could not record the failure "
                 f"({type(unrecorded).__name__}); its status is read from this log")
        return 1
    else:
        with ws.store.write() as con:
            run_store.set_run(con, run_id, "done")
    finally:
        if locked:  # after the final status: the next run finds this one ended
            lock.release(ws)
    print(f"run {run_id}: done", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m middo_core.jobs.worker <workspace> <run_id>", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminated)
    return run(Path(argv[0]), argv[1])


if __name__ == "__main__":
    sys.exit(main())

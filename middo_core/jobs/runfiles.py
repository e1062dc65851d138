"""A run's folder, artifacts/runs/<run_id>/: live progress, cancel flag, process identity, log.

Progress goes to files, not to the store, so the app and the CLI poll a running job without ever
contending with it for the DuckDB file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from middo_core.files import write_text_atomic
from middo_core.progress import Cancelled, Progress
from middo_core.workspace import Workspace

PROGRESS_FILE = "progress.json"
CANCEL_FILE = "cancel"
PROCESS_FILE = "process.json"
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
MIN_WRITE_INTERVAL_S = 0.5  # progress calls can come per batch; the file needs far fewer writes


def run_dir(ws: Workspace, run_id: str) -> Path:
    return ws.artifacts / "runs" / run_id


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write to a temporary file and rename: readers never see half a file."""
    write_text_atomic(path, json.dumps(payload, default=str))


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# the worker's last word on a failed run, when the store may not take it (a full disk)
FAILED_LINE = "run {run_id}: failed: "


def logged_failure(path: Path, run_id: str) -> str | None:
    """The error a worker logged for `run_id` before it tried to record it, if it did."""
    prefix = FAILED_LINE.format(run_id=run_id)
    found = [ln[len(prefix):] for ln in log_tail(path, 200) if ln.startswith(prefix)]
    return found[-1] if found else None


def log_tail(path: Path, lines: int = 20, max_bytes: int = 64_000) -> list[str]:
    if lines <= 0:
        return []
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    # progress bars redraw with \r: keep the last state of each line
    return [ln.rsplit("\r", 1)[-1] for ln in text.splitlines() if ln.strip()][-lines:]


def request_cancel(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANCEL_FILE).write_text(str(time.time()), encoding="utf-8")


def cancel_requested(folder: Path) -> bool:
    return (folder / CANCEL_FILE).exists()


class ProgressWriter:
    """A progress callback that replaces a JSON file; raises Cancelled once a cancel flag appears."""

    def __init__(self, path: Path, cancel_flag: Path | None = None) -> None:
        self.path = Path(path)
        self.cancel_flag = cancel_flag
        self._last_write = 0.0
        self._last_stage: str | None = None
        self._stage: tuple[str, float, int] | None = None  # the current stage, when and where it began

    @classmethod
    def for_run(cls, ws: Workspace, run_id: str) -> ProgressWriter:
        folder = run_dir(ws, run_id)
        return cls(folder / PROGRESS_FILE, folder / CANCEL_FILE)

    def __call__(self, event: Progress) -> None:
        if self.cancel_flag is not None and self.cancel_flag.exists():
            raise Cancelled("cancelled by request")
        now = time.time()
        if self._stage is None or self._stage[0] != event.stage:
            self._stage = (event.stage, now, event.done)
        final = event.total and event.done >= event.total
        if event.stage == self._last_stage and not final and now - self._last_write < MIN_WRITE_INTERVAL_S:
            return
        payload = asdict(event) if is_dataclass(event) else dict(vars(event))
        for key in ("step", "loss", "eta_s"):
            payload.setdefault(key, None)
        if payload["eta_s"] is None:
            payload["eta_s"] = self._eta(event, now)
        payload["updated_at"] = now
        write_json_atomic(self.path, payload)
        self._last_write, self._last_stage = now, event.stage

    def _eta(self, event: Progress, now: float) -> float | None:
        """Seconds left in this stage at the rate it has gone so far (None before a first step)."""
        _, started, first_done = self._stage
        moved, elapsed = event.done - first_done, now - started
        if not event.total or moved <= 0 or elapsed <= 0:
            return None
        return max(event.total - event.done, 0) * elapsed / moved

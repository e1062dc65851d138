"""Progress reporting and cancellation shared by every long-running function.

Long functions take `progress: ProgressFn | None` and call it as work advances; they never
print. The CLI turns calls into a rich progress bar, the app into st.progress, a background
job into its run record. Raising `Cancelled` from the callback stops the work cleanly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    stage: str  # e.g. "complexity: loss under base model"
    done: int
    total: int
    message: str = ""


ProgressFn = Callable[[Progress], None]


class Cancelled(Exception):
    """Raised (usually from a progress callback) to stop a long-running pass."""


def report(progress: ProgressFn | None, stage: str, done: int, total: int, message: str = "") -> None:
    if progress is not None:
        progress(Progress(stage, done, total, message))


def format_duration(seconds: float) -> str:
    """A duration as people say it: "45 s", "12 min", "2 h 5 min"."""
    seconds = int(max(seconds, 0))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"

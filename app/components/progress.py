"""Progress shown in the page: a bar fed by the library's progress callback."""

from __future__ import annotations

import time

import streamlit as st

from middo_core.progress import Progress


class ProgressBar:
    """A ProgressFn that draws into an st.progress with the stage, counts and an ETA."""

    def __init__(self, label: str) -> None:
        self.bar = st.progress(0.0, text=label)
        self.started = time.monotonic()

    def __call__(self, event: Progress) -> None:
        total = max(event.total, 1)
        frac = min(event.done / total, 1.0)
        elapsed = time.monotonic() - self.started
        eta = f", about {elapsed / frac - elapsed:,.0f} s left" if 0 < frac < 1 else ""
        self.bar.progress(frac, text=f"{event.stage}: {event.done:,} of {event.total:,}{eta}")

    def done(self) -> None:
        self.bar.empty()

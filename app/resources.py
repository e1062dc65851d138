"""The Studio's only caches. Keys include the store version, so a write anywhere shows up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from middo_core import summaries
from middo_core.signals.thresholds import SignalTable
from middo_core.workspace import STORE_FILE, Workspace, open_workspace


def store_version(root: str | Path) -> int:
    """Changes whenever the store file (or its write-ahead log) is written."""
    out = 0
    for name in (STORE_FILE, STORE_FILE + ".wal"):
        try:
            stat = (Path(root) / name).stat()
        except FileNotFoundError:
            continue
        out = max(out, stat.st_mtime_ns) + stat.st_size
    return out


@st.cache_resource(show_spinner=False, max_entries=8)
def workspace(root: str, version: int) -> Workspace:
    return open_workspace(Path(root))


@st.cache_data(show_spinner=False, max_entries=16)
def status(root: str, version: int) -> dict[str, Any]:
    from middo_core.status import workspace_status

    return workspace_status(workspace(root, version))


@st.cache_resource(show_spinner="Loading signals…", max_entries=6)
def signals(root: str, iteration: int, version: int) -> tuple[pd.DataFrame, SignalTable] | None:
    """The per-sample signals of D(iteration) and their threshold table (None when undiagnosed)."""
    from middo_core.store.signals import load_signals

    ws = workspace(root, version)
    with ws.store.read() as con:
        frame = load_signals(con, iteration)
    if frame is None or frame.empty:
        return None
    return frame, SignalTable(frame)


@st.cache_data(show_spinner=False, max_entries=32)
def histograms(root: str, iteration: int, compare: int | None, version: int,
               columns: tuple[str, ...], bins: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """Per column: shared bin edges and the counts of the iteration (and the compare one)."""
    current = signals(root, iteration, version)
    other = signals(root, compare, version) if compare is not None else None
    out: dict[str, dict[str, np.ndarray]] = {}
    for col in columns:
        a = current[0][col].to_numpy(float, na_value=np.nan) if current and col in current[0] else np.array([])
        b = other[0][col].to_numpy(float, na_value=np.nan) if other and col in other[0] else np.array([])
        edges = summaries.shared_edges(a, b, bins=bins)
        out[col] = {"edges": edges, "current": summaries.histogram(a, edges),
                    "compare": summaries.histogram(b, edges) if b.size else None}
    return out


@st.cache_data(show_spinner=False, max_entries=8)
def scatter_subset(root: str, iteration: int, version: int, max_points: int) -> np.ndarray:
    data = signals(root, iteration, version)
    n = len(data[1]) if data else 0
    return summaries.drawing_subset(n, None, max_points=max_points)


@st.cache_resource(show_spinner="Loading the map…", max_entries=4)
def projection(root: str, iteration: int, method: str, version: int) -> dict[str, Any]:
    """The stored map with what every redraw reuses: escaped hover texts, rows in the signal table.

    Shared between sessions and never copied: callers must not modify it.
    """
    import html

    from middo_core.projections import load_projection

    points = load_projection(workspace(root, version), iteration, method)
    hover = np.array([html.escape(str(t or ""))[:HOVER_CHARS] for t in points["instruction"]], dtype=object)
    data = signals(root, iteration, version)
    pos = summaries.positions(data[1].ids, points["sample_id"].to_numpy()) if data is not None else None
    return {"points": points, "hover": hover, "positions": pos}


HOVER_CHARS = 80


@st.cache_data(show_spinner=False, max_entries=32)
def loop_state(root: str, iteration: int, version: int) -> tuple[dict[str, bool], str] | None:
    """The loop stepper's states and next action for an iteration (None without middo_core.loop)."""
    try:
        from middo_core import loop
    except ImportError:
        return None
    ws = workspace(root, version)
    return loop.step_states(ws, iteration), loop.next_action(ws, iteration)


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_statistics(root: str, iteration: int, version: int) -> dict[str, Any]:
    from middo_core.store.views import dataset_statistics as stats

    with workspace(root, version).store.read() as con:
        return stats(con, iteration)


@st.cache_data(show_spinner=False, max_entries=64)
def sample_count(root: str, iteration: int, text: str, origin: str | None, version: int) -> int:
    from middo_core.store.views import count_samples

    with workspace(root, version).store.read() as con:
        return count_samples(con, iteration, text, origin)

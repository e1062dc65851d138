"""The map figure: WebGL points over a density shading of every sample; selections back to ids.

Drawing only: the subset, the flags and the density grid come computed. Coordinates and colour
values travel as plotly typed arrays (base64 float32): Streamlit validates and copies each as one
string instead of 50,000 numbers, and the browser decodes them without parsing text.
"""

from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Points drawn in WebGL; beyond it, the density shading shows every sample. MIDDO_MAP_POINTS
# lowers it for a slow browser (or raises it for a fast one).
MAX_DRAWN = int(os.environ.get("MIDDO_MAP_POINTS", "50000"))
FLAG_PALETTE = {"not flagged": "#b8c2cc", "complexity": "#d6453b", "diversity": "#2f9e6a",
                "quality": "#e09b24", "several axes": "#7b3fc4"}
CATEGORY_COLOURS = ("#3b6fd6", "#d6453b", "#2f9e6a", "#e09b24", "#7b3fc4", "#1fa2b8", "#c2457a",
                    "#6d7d0f", "#8c564b", "#4b5563")
MISSING = "#cfd5dc"
# A signal is drawn in ten steps of Viridis, one trace each: WebGL draws one-colour traces far
# faster than a colour per point (about 0.45 s against 1 s for 50,000 points in software WebGL).
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
           "#b5de2b", "#fde725")
DENSITY_SCALE = [[0.0, "rgba(148,160,175,0.18)"], [1.0, "rgba(55,65,81,0.55)"]]
# Marker diameter in px falls with log10 of the points drawn: ~8.5 px at 300 (each point easy to
# see and click), 5 px at 10,000, ~3 px at 50,000 (clusters stay readable rather than one blot).
MARKER_PX = (14.4, 2.38)  # size = a - b * log10(points drawn)
MARKER_RANGE = (2.5, 9.0)
DENSITY_MARKER_PX = 4  # over the density shading, the points are a sample of the samples


def typed(values: np.ndarray, dtype: str = "f4", shape: tuple[int, ...] | None = None) -> dict[str, str]:
    """A plotly typed array: {"dtype", "bdata"} (little-endian, base64)."""
    arr = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    out = {"dtype": dtype, "bdata": base64.b64encode(arr.tobytes()).decode("ascii")}
    if shape is not None:
        out["shape"] = ",".join(str(s) for s in shape)
    return out


@dataclass
class MapFigure:
    figure: dict[str, Any]
    trace_ids: list[np.ndarray | None] = field(default_factory=list)  # per trace: sample ids, None = shading
    drawn: int = 0
    total: int = 0
    note: str = ""  # what is drawn, when not every sample is a point


def density_trace(grid: dict) -> dict[str, Any]:
    z = grid["z"]
    return {"type": "heatmap", "z": typed(z, shape=z.shape), "x0": grid["x0"], "dx": grid["dx"],
            "y0": grid["y0"], "dy": grid["dy"], "colorscale": DENSITY_SCALE, "showscale": False,
            "hoverinfo": "skip", "zsmooth": "best", "name": "density of every sample", "showlegend": False}


def marker_size(drawn: int, density: bool = False) -> float:
    """Marker diameter in px for `drawn` points (see MARKER_PX)."""
    if density:
        return DENSITY_MARKER_PX
    a, b = MARKER_PX
    return round(min(max(a - b * math.log10(max(drawn, 1)), MARKER_RANGE[0]), MARKER_RANGE[1]), 1)


def about(seconds: float) -> str:
    """A length of time, rounded the way one says it: '40 s', '6 min', '1 h 20 min'."""
    seconds = int(round(max(seconds, 0)))
    if seconds < 90:
        return f"{max(seconds, 1)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _points(x: np.ndarray, y: np.ndarray, hover: np.ndarray, name: str, size: float,
            **marker: Any) -> dict[str, Any]:
    return {"type": "scattergl", "mode": "markers", "name": name, "x": typed(x), "y": typed(y),
            "hovertext": hover.tolist(), "hovertemplate": "%{hovertext}<extra></extra>",
            "marker": {"size": size, "opacity": 0.75, **marker}}


def map_figure(x: np.ndarray, y: np.ndarray, ids: np.ndarray, hover: np.ndarray, values: np.ndarray,
               colour: str, continuous: bool, title: str, total: int,
               density: dict | None = None) -> MapFigure:
    """The drawn points (already the subset), one trace per category or one coloured by a value."""
    data: list[dict[str, Any]] = []
    trace_ids: list[np.ndarray | None] = []
    size = marker_size(len(ids), density=density is not None)
    if density is not None:
        data.append(density_trace(density))
        trace_ids.append(None)

    def add(mask: np.ndarray, name: str, **marker: Any) -> None:
        if mask.any():
            data.append(_points(x[mask], y[mask], hover[mask], name, size, **marker))
            trace_ids.append(ids[mask])

    if continuous:
        vals = np.asarray(values, dtype=np.float64)
        known = np.isfinite(vals)
        add(~known, f"no {colour.replace('_', ' ')}", color=MISSING)
        for name, mask, step_colour in colour_steps(vals, len(VIRIDIS)):
            add(mask, name, color=VIRIDIS[step_colour])
    else:
        labels = np.asarray(values, dtype=object)
        names = sorted({str(v) for v in labels}, key=lambda v: (v != "not flagged", v))
        strings = labels.astype(str)
        for i, name in enumerate(names):  # 'not flagged' first, so flagged points are drawn on top
            colour_of = FLAG_PALETTE.get(name) if colour == "flag" else CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]
            add(strings == name, name, color=colour_of)
    layout = {"title": {"text": title}, "height": 640, "dragmode": "lasso",
              "margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "legend": {"itemsizing": "constant"},
              "xaxis": {"visible": False}, "yaxis": {"visible": False}, "uirevision": "map"}
    return MapFigure({"data": data, "layout": layout}, trace_ids, drawn=len(ids), total=total)


def colour_steps(values: np.ndarray, k: int) -> list[tuple[str, np.ndarray, int]]:
    """(legend name, mask, step) for k equal steps between the 1st and 99th percentile; the end
    steps take the outliers, so one extreme value does not squeeze every other point into a step."""
    known = np.isfinite(values)
    if not known.any():
        return []
    lo, hi = np.percentile(values[known], [1, 99])
    if not hi > lo:
        return [(f"{lo:.3g}", known, k // 2)]
    edges = np.linspace(lo, hi, k + 1)
    step = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, k - 1)
    out = []
    for i in range(k):
        name = (f"< {edges[1]:.3g}" if i == 0 else f"≥ {edges[i]:.3g}" if i == k - 1
                else f"{edges[i]:.3g} – {edges[i + 1]:.3g}")
        out.append((name, known & (step == i), i))
    return out[::-1]  # the legend reads from high to low


def selected_ids(event: Any, trace_ids: list[np.ndarray | None]) -> list[str]:
    """Sample ids of the points in a plotly selection event (box, lasso or click)."""
    picked: list[str] = []
    for point in (event.selection.points if event else []):
        curve = point.get("curve_number")
        index = point.get("point_index", point.get("point_number"))
        if curve is None or index is None or curve >= len(trace_ids) or trace_ids[curve] is None:
            continue
        if index < len(trace_ids[curve]):
            picked.append(str(trace_ids[curve][index]))
    return list(dict.fromkeys(picked))

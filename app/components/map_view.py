"""The map figures and their selections: WebGL points up to MAX_DRAWN samples, one image above.

Up to MAX_DRAWN samples every sample is a WebGL point with its text on hover, and a click, a box
or a lasso selects points. Above it, every sample is drawn into one image on the server
(middo_core.map_raster) and a box or a lasso comes back as its outline, resolved over every
coordinate. Drawing only: flags, colours and images come computed. Coordinates and colour values
travel as plotly typed arrays (base64 float32): Streamlit validates and copies each as one string
instead of 50,000 numbers, and the browser decodes them without parsing text.
"""

from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Samples up to which each is a WebGL point (hover, click); above it the map is one image of all
# of them. MIDDO_MAP_POINTS lowers it for a slow browser (or raises it for a fast one).
MAX_DRAWN = int(os.environ.get("MIDDO_MAP_POINTS", "50000"))
FLAG_PALETTE = {"not flagged": "#b8c2cc", "complexity": "#d6453b", "diversity": "#2f9e6a",
                "quality": "#e09b24", "several axes": "#7b3fc4"}
CATEGORY_COLOURS = ("#3b6fd6", "#d6453b", "#2f9e6a", "#e09b24", "#7b3fc4", "#1fa2b8", "#c2457a",
                    "#6d7d0f", "#8c564b", "#4b5563")
MISSING = "#cfd5dc"
SEARCH_COLOUR = "#111827"  # the samples a search found, over the faded map
# A signal is drawn in ten steps of Viridis, one trace each: WebGL draws one-colour traces far
# faster than a colour per point (about 0.45 s against 1 s for 50,000 points in software WebGL).
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
           "#b5de2b", "#fde725")
# Marker diameter in px falls with log10 of the points drawn: ~8.5 px at 300 (each point easy to
# see and click), 5 px at 10,000, ~3 px at 50,000 (clusters stay readable rather than one blot).
MARKER_PX = (14.4, 2.38)  # size = a - b * log10(points drawn)
MARKER_RANGE = (2.5, 9.0)
MAP_HEIGHT = 640


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
    trace_ids: list[np.ndarray | None] = field(default_factory=list)  # per trace: sample ids, None = legend only
    drawn: int = 0
    total: int = 0
    note: str = ""  # how the map is drawn, when it is one image
    image: bool = False  # one image of every sample: a selection is an outline, resolved on the server


def marker_size(drawn: int) -> float:
    """Marker diameter in px for `drawn` points (see MARKER_PX)."""
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


def rgb(colours: Any) -> np.ndarray:
    """'#rrggbb' colours as an (n, 3) uint8 array."""
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.uint8)


def category_colours(colour: str, names: list[str]) -> list[str]:
    """The colour of each category name: the flag palette for flags, a cycle of ten otherwise."""
    return [FLAG_PALETTE.get(n, MISSING) if colour == "flag" else CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]
            for i, n in enumerate(names)]


def category_order(labels: np.ndarray) -> list[str]:
    """Category names, 'not flagged' first, so flagged points are drawn on top."""
    return sorted({str(v) for v in labels}, key=lambda v: (v != "not flagged", v))


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "height": MAP_HEIGHT, "dragmode": "lasso",
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "legend": {"itemsizing": "constant"},
            "xaxis": {"visible": False}, "yaxis": {"visible": False}, "uirevision": "map", **extra}


def map_figure(x: np.ndarray, y: np.ndarray, ids: np.ndarray, hover: np.ndarray, values: np.ndarray,
               colour: str, continuous: bool, title: str, found: np.ndarray | None = None) -> MapFigure:
    """Every sample as a point, one trace per category or per step of a value; the samples a
    search `found` (a mask) ringed on top."""
    data: list[dict[str, Any]] = []
    trace_ids: list[np.ndarray | None] = []
    size = marker_size(len(ids))

    def add(mask: np.ndarray, name: str, px: float = size, **marker: Any) -> None:
        if mask.any():
            data.append(_points(x[mask], y[mask], hover[mask], name, px, **marker))
            trace_ids.append(ids[mask])

    if continuous:
        vals = np.asarray(values, dtype=np.float64)
        known = np.isfinite(vals)
        add(~known, f"no {colour.replace('_', ' ')}", color=MISSING)
        for name, mask, step_colour in colour_steps(vals, len(VIRIDIS)):
            add(mask, name, color=VIRIDIS[step_colour])
    else:
        labels = np.asarray(values, dtype=object).astype(str)
        names = category_order(labels)
        for name, colour_of in zip(names, category_colours(colour, names), strict=True):
            add(labels == name, name, color=colour_of)
    if found is not None:
        add(np.asarray(found, dtype=bool), "found by the search", color="rgba(0,0,0,0)",
            px=max(size + 4, 8), line={"color": SEARCH_COLOUR, "width": 2})
    return MapFigure({"data": data, "layout": _layout(title)}, trace_ids, drawn=len(ids), total=len(ids))


def step_edges(values: np.ndarray, k: int) -> np.ndarray | None:
    """k + 1 edges of k equal steps between the 1st and 99th percentile (the end steps take the
    outliers, so one extreme value does not squeeze every other point into one step); None when
    no value is known, a single edge when every value is the same."""
    known = np.isfinite(values)
    if not known.any():
        return None
    lo, hi = np.percentile(values[known], [1, 99])
    return np.linspace(lo, hi, k + 1) if hi > lo else np.array([lo])


def step_names(edges: np.ndarray) -> list[str]:
    """Legend names of the steps between `edges`, low to high."""
    if len(edges) == 1:
        return [f"{edges[0]:.3g}"]
    k = len(edges) - 1
    return [f"< {edges[1]:.3g}" if i == 0 else f"≥ {edges[i]:.3g}" if i == k - 1
            else f"{edges[i]:.3g} – {edges[i + 1]:.3g}" for i in range(k)]


def colour_steps(values: np.ndarray, k: int) -> list[tuple[str, np.ndarray, int]]:
    """(legend name, mask, step) of each of k steps of `values` (see step_edges), high to low."""
    edges = step_edges(values, k)
    if edges is None:
        return []
    known = np.isfinite(values)
    if len(edges) == 1:
        return [(step_names(edges)[0], known, k // 2)]
    step = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, k - 1)
    out = [(name, known & (step == i), i) for i, name in enumerate(step_names(edges))]
    return out[::-1]  # the legend reads from high to low


def _legend_entry(name: str, colour: str) -> dict[str, Any]:
    # An empty trace: a legend row, and a trace plotly can select on, so box and lasso stay offered
    return {"type": "scatter", "mode": "markers", "x": [None], "y": [None], "name": name,
            "marker": {"color": colour, "size": 10}, "hoverinfo": "skip", "showlegend": True}


def image_figure(png: bytes, frame: Any, legend: list[tuple[str, str]], title: str, total: int,
                 note: str) -> MapFigure:
    """Every sample in one image (middo_core.map_raster) laid on the map's axes; `legend` is
    (name, colour) per row. The axes' ranges are the image's, so an outline drawn on it is in
    the map's own coordinates."""
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    image = {"source": source, "xref": "x", "yref": "y", "x": frame.x0, "y": frame.y1,
             "sizex": frame.x1 - frame.x0, "sizey": frame.y1 - frame.y0, "sizing": "stretch",
             "xanchor": "left", "yanchor": "top", "layer": "below"}
    layout = _layout(title, images=[image],
                     xaxis={"visible": False, "range": [frame.x0, frame.x1], "autorange": False},
                     yaxis={"visible": False, "range": [frame.y0, frame.y1], "autorange": False})
    layout["legend"] = {"itemsizing": "constant", "itemclick": False, "itemdoubleclick": False}
    data = [_legend_entry(name, c) for name, c in legend]
    return MapFigure({"data": data, "layout": layout}, [None] * len(data), drawn=total, total=total,
                     note=note, image=True)


def selected_region(event: Any) -> tuple[str, tuple[float, ...], tuple[float, ...]] | None:
    """The last box or lasso of a plotly selection event: (kind, xs, ys), or None."""
    selection = event.selection if event else None
    if not selection:
        return None
    for kind in ("lasso", "box"):
        shapes = selection.get(kind) or []
        if shapes:
            shape = shapes[-1]
            return kind, tuple(float(v) for v in shape["x"]), tuple(float(v) for v in shape["y"])
    return None


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

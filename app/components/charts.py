"""Plotly figures from precomputed numbers (bins, subsets): drawing only, no statistics.

Figures are plain dicts without a template: Streamlit validates every figure on every rerun,
and a templated figure costs ~30 ms to validate against ~5 ms for a plain one. That is the
difference between an instant m slider and a sluggish one.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import streamlit as st

from middo_core.summaries import bin_centers

CURRENT = "#3b6fd6"
COMPARE = "#9aa3ad"
FLAGGED = "#d6453b"
SHADE = "rgba(214,69,59,0.10)"
CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}

Figure = dict[str, Any]


def layout(title: str, x_title: str, y_title: str, height: int = 260, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}}, "height": height,
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "bargap": 0.02, "barmode": "overlay",
            "xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": y_title}},
            "legend": {"orientation": "h", "y": -0.3}, **extra}


def vline(x: float, label: str = "", width: int = 2) -> tuple[dict, dict | None]:
    shape = {"type": "line", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1,
             "line": {"color": FLAGGED, "dash": "dash", "width": width}}
    note = {"x": x, "y": 1, "yref": "paper", "text": label, "showarrow": False,
            "yanchor": "bottom", "font": {"color": FLAGGED, "size": 11}} if label else None
    return shape, note


def histogram_figure(title: str, x_title: str, hist: dict, iteration: int, compare: int | None,
                     thresholds: list[tuple[float | None, str]] | None = None, height: int = 260) -> Figure:
    """Bars of the current iteration (and the compare one behind them), with threshold lines."""
    edges = hist["edges"]
    centers = bin_centers(edges)
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    data = []
    if compare is not None and hist.get("compare") is not None:
        data.append({"type": "bar", "x": centers, "y": hist["compare"], "width": width,
                     "name": f"iteration {compare}", "marker": {"color": COMPARE}, "opacity": 0.55})
    data.append({"type": "bar", "x": centers, "y": hist["current"], "width": width,
                 "name": f"iteration {iteration}", "marker": {"color": CURRENT}, "opacity": 0.75})
    shapes, notes = [], []
    for tau, label in thresholds or []:
        if tau is not None and np.isfinite(tau):
            shape, note = vline(float(tau), label)
            shapes.append(shape)
            notes.extend([note] if note else [])
    return {"data": data, "layout": layout(title, x_title, "samples", height, shapes=shapes,
                                           annotations=notes, showlegend=compare is not None)}


def loss_scatter_figure(pre: np.ndarray, post: np.ndarray, flagged: np.ndarray, tau_pre: float,
                        tau_post: float, iteration: int, n_total: int) -> Figure:
    """L_pre against L_post; the flagged quadrant (both above their thresholds) shaded."""
    def points(mask: np.ndarray, name: str, color: str, size: int, opacity: float) -> dict:
        return {"type": "scattergl", "x": pre[mask], "y": post[mask], "mode": "markers", "name": name,
                "marker": {"size": size, "color": color, "opacity": opacity}, "hoverinfo": "skip"}

    data = [points(~flagged, "kept", CURRENT, 3, 0.45), points(flagged, "flagged", FLAGGED, 4, 0.8)]
    shapes = []
    finite_pre, finite_post = pre[np.isfinite(pre)], post[np.isfinite(post)]
    if finite_pre.size and np.isfinite(tau_pre) and np.isfinite(tau_post):
        shapes.append({"type": "rect", "x0": tau_pre, "x1": max(float(finite_pre.max()), tau_pre),
                       "y0": tau_post, "y1": max(float(finite_post.max()), tau_post),
                       "fillcolor": SHADE, "line": {"width": 0}, "layer": "below"})
        shapes.append(vline(tau_pre, width=1)[0])
        shapes.append({"type": "line", "y0": tau_post, "y1": tau_post, "xref": "paper", "x0": 0,
                       "x1": 1, "line": {"color": FLAGGED, "dash": "dash", "width": 1}})
    shown = f" ({pre.size:,} of {n_total:,} drawn)" if pre.size < n_total else ""
    return {"data": data, "layout": layout(f"Loss before vs after training, iteration {iteration}{shown}",
                                           "L_pre (base model)", "L_post (fine-tuned)", 320,
                                           shapes=shapes)}


def line_figure(frame, x: str, ys: list[str], title: str, y_title: str, height: int = 260) -> Figure:
    data = [{"type": "scatter", "x": frame[x].to_numpy(), "y": frame[y].to_numpy(),
             "mode": "lines+markers", "name": y} for y in ys]
    fig_layout = layout(title, x, y_title, height)
    fig_layout["xaxis"]["dtick"] = 1
    return {"data": data, "layout": fig_layout}


def hover_text(texts) -> list[str]:
    """Sample text for hover labels, escaped so plotly never reads it as markup."""
    return [html.escape(str(t or ""))[:160] for t in texts]


def render_figure(fig: Figure, key: str, **kwargs) -> object:
    return st.plotly_chart(fig, key=key, config=CHART_CONFIG, width="stretch", **kwargs)

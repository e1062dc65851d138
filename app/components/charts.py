"""Plotly figures from precomputed numbers (bins, subsets): drawing only, no statistics."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from middo_core.summaries import bin_centers

CURRENT = "#3b6fd6"
COMPARE = "#9aa3ad"
FLAGGED = "#d6453b"
SHADE = "rgba(214,69,59,0.10)"
CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 260) -> go.Figure:
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=height,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, bargap=0.02,
                      xaxis_title=x_title, yaxis_title=y_title, barmode="overlay",
                      legend={"orientation": "h", "y": -0.3}, template="plotly_white")
    return fig


def histogram_figure(title: str, x_title: str, hist: dict, iteration: int, compare: int | None,
                     thresholds: list[tuple[float, str]] | None = None, height: int = 260) -> go.Figure:
    """Bars of the current iteration (and the compare one behind them), with threshold lines."""
    edges = hist["edges"]
    centers = bin_centers(edges)
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    fig = go.Figure()
    if compare is not None and hist.get("compare") is not None:
        fig.add_bar(x=centers, y=hist["compare"], width=width, name=f"iteration {compare}",
                    marker_color=COMPARE, opacity=0.55)
    fig.add_bar(x=centers, y=hist["current"], width=width, name=f"iteration {iteration}",
                marker_color=CURRENT, opacity=0.75)
    for tau, label in thresholds or []:
        if tau is not None and np.isfinite(tau):
            fig.add_vline(x=tau, line_color=FLAGGED, line_width=2, line_dash="dash",
                          annotation_text=label, annotation_position="top")
    fig.update_layout(showlegend=compare is not None)
    return _layout(fig, title, x_title, "samples", height)


def loss_scatter_figure(pre: np.ndarray, post: np.ndarray, flagged: np.ndarray, tau_pre: float,
                        tau_post: float, iteration: int, n_total: int) -> go.Figure:
    """L_pre against L_post; the flagged quadrant (both above their thresholds) shaded."""
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=pre[~flagged], y=post[~flagged], mode="markers", name="kept",
                               marker={"size": 3, "color": CURRENT, "opacity": 0.45},
                               hoverinfo="skip"))
    fig.add_trace(go.Scattergl(x=pre[flagged], y=post[flagged], mode="markers", name="flagged",
                               marker={"size": 4, "color": FLAGGED, "opacity": 0.8},
                               hoverinfo="skip"))
    finite_pre, finite_post = pre[np.isfinite(pre)], post[np.isfinite(post)]
    if finite_pre.size and np.isfinite(tau_pre) and np.isfinite(tau_post):
        x1 = max(float(finite_pre.max()), tau_pre)
        y1 = max(float(finite_post.max()), tau_post)
        fig.add_shape(type="rect", x0=tau_pre, x1=x1, y0=tau_post, y1=y1, fillcolor=SHADE,
                      line={"width": 0}, layer="below")
        fig.add_vline(x=tau_pre, line_color=FLAGGED, line_dash="dash", line_width=1)
        fig.add_hline(y=tau_post, line_color=FLAGGED, line_dash="dash", line_width=1)
    shown = f" ({pre.size:,} of {n_total:,} drawn)" if pre.size < n_total else ""
    return _layout(fig, f"Loss before vs after training, iteration {iteration}{shown}",
                   "L_pre (base model)", "L_post (fine-tuned)", height=320)


def line_figure(frame, x: str, ys: list[str], title: str, y_title: str, height: int = 260) -> go.Figure:
    fig = go.Figure()
    for y in ys:
        fig.add_scatter(x=frame[x], y=frame[y], mode="lines+markers", name=y)
    fig.update_xaxes(dtick=1)
    return _layout(fig, title, x, y_title, height)


def hover_text(texts) -> list[str]:
    """Sample text for hover labels, escaped so plotly never reads it as markup."""
    return [html.escape(str(t or ""))[:160] for t in texts]


def render_figure(fig: go.Figure, key: str, **kwargs) -> object:
    return st.plotly_chart(fig, key=key, config=CHART_CONFIG, width="stretch", **kwargs)

"""Map: the samples of an iteration on a 2-D map of their embeddings; select points to read them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import resources, state
from app.components.charts import render_figure
from app.components.common import render_error
from app.components.progress import ProgressBar
from app.components.selection import m_key
from middo_core import summaries
from middo_core.projections import ensure_projection
from middo_core.signals.thresholds import explain
from middo_core.store.views import sample_signals

MAX_DRAWN = 50_000
SIGNALS = ("loss_pre", "loss_post", "diversity", "quality")
PALETTE = {"not flagged": "#b8c2cc", "complexity": "#d6453b", "diversity": "#2f9e6a",
           "quality": "#e09b24", "several axes": "#7b3fc4"}

ctx = state.require()
it = ctx.iteration
st.title(f"Map of D({it})")
c1, c2 = st.columns([1, 2])
method = c1.segmented_control("Projection", ["umap", "tsne"], default="umap", key="map_method",
                              format_func=lambda m: {"umap": "UMAP", "tsne": "t-SNE"}[m]) or "umap"
colour = c2.selectbox("Colour by", ["flag", "origin", "created_in_iteration", *SIGNALS],
                      key="map_colour")

mapped = resources.projection(ctx.root, it, method, ctx.version)
points = mapped["points"]
if points.empty:
    st.info(f"No {method.upper()} map for iteration {it} yet. Compute it: it needs the embeddings "
            "of the diversity diagnosis and is stored, so this happens once per iteration.")
    if st.button(f"Compute the {method.upper()} map", type="primary", key="compute_map"):
        bar = ProgressBar(f"{method.upper()} map of D({it})")
        try:
            ensure_projection(ctx.ws, it, method, progress=bar)
        except Exception as exc:
            render_error(exc, "Could not compute the map")
        else:
            st.rerun()
        finally:
            bar.done()
    st.stop()

# The flags use the m's of the Diagnose page (or the ones saved with the iteration).
try:
    data = resources.signals(ctx.root, it, ctx.version)
except Exception:
    data = None
selection = None
if data is not None:
    table = data[1]
    record = next((r for r in resources.status(ctx.root, ctx.version)["iterations"] if r["number"] == it), {})
    cfg = ctx.ws.config.selection

    def m_of(axis: str) -> float:
        stored = record.get(f"m_{axis}")
        fallback = stored if stored is not None and stored == stored else getattr(cfg, f"m_{axis}")
        return float(st.session_state.get(m_key(axis, it), fallback))

    selection = table.select(m_of("complexity"), m_of("diversity"), m_of("quality"))
    flags = summaries.flag_labels(table.ids, selection.masks, points["sample_id"].to_numpy(),
                                  pos=mapped["positions"])
else:
    flags = np.full(len(points), "not flagged", dtype=object)
    if colour == "flag":
        st.caption("No diagnosis for this iteration: nothing is flagged.")

keep = flags != "not flagged"
idx = summaries.drawing_subset(len(points), keep, max_points=MAX_DRAWN)
drawn = points.iloc[idx]
drawn_flags = flags[idx]
traces: list[dict] = []
trace_ids: list[np.ndarray] = []  # sample ids per trace: a selection reports (trace, point index)
hover = mapped["hover"][idx]


def add_trace(mask: np.ndarray, name: str, **marker) -> None:
    part = drawn[mask]
    trace_ids.append(part["sample_id"].to_numpy())
    traces.append({
        "type": "scattergl", "x": part["x"].to_numpy(), "y": part["y"].to_numpy(), "mode": "markers",
        "name": name, "hovertext": hover[mask], "hovertemplate": "%{hovertext}<extra></extra>",
        "marker": {"size": 4, "opacity": 0.75, **{k: v for k, v in marker.items() if v is not None}}})


if colour in ("flag", "origin", "created_in_iteration"):
    values = drawn_flags if colour == "flag" else drawn[colour].astype(str).to_numpy()
    names = sorted(pd.unique(values), key=lambda v: (v != "not flagged", str(v)))
    for name in names:  # 'not flagged' first, so flagged points are drawn on top
        add_trace(values == name, str(name), color=PALETTE.get(str(name)) if colour == "flag" else None)
else:
    add_trace(np.ones(len(drawn), bool), colour, color=drawn[colour].to_numpy(), colorscale="Viridis",
              showscale=True, colorbar={"title": {"text": colour}})
all_flagged_kept = int(keep[idx].sum()) == int(keep.sum())
shown = f"{len(points):,} samples" if len(drawn) == len(points) else (
    f"{len(drawn):,} of {len(points):,} samples drawn"
    + (" (every flagged one kept)" if all_flagged_kept else " (flagged ones sampled too)"))
fig = {"data": traces, "layout": {
    "title": {"text": f"{method.upper()} map of D({it}) coloured by {colour.replace('_', ' ')}: {shown}"},
    "height": 640, "dragmode": "lasso", "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
    "legend": {"itemsizing": "constant"}, "xaxis": {"visible": False}, "yaxis": {"visible": False}}}
event = render_figure(fig, key=f"map_{it}_{method}", on_select="rerun",
                      selection_mode=("box", "lasso", "points"))

picked = []
for point in event.selection.points if event else []:
    curve, index = point.get("curve_number"), point.get("point_index", point.get("point_number"))
    if curve is not None and index is not None and curve < len(trace_ids) and index < len(trace_ids[curve]):
        picked.append(str(trace_ids[curve][index]))
if not picked:
    st.caption("Draw a lasso or a box around points (or click one) to read those samples here.")
    st.stop()
st.markdown(f"**{len(picked):,} samples selected**" + (" (the first 100 shown)" if len(picked) > 100 else ""))
with ctx.ws.store.read() as con:
    rows = sample_signals(con, it, picked[:100])
st.dataframe(rows, hide_index=True, width="stretch", height=300)
if selection is not None:
    known = set(data[1].ids)
    for rec in rows.to_dict("records")[:20]:
        reasons = explain(pd.Series({"sample_id": rec["id"]}), selection, data[1]) \
            if rec["id"] in known else []
        if reasons:
            with st.container(border=True):
                st.caption(rec["id"] + ": " + "; ".join(reasons))
                st.text(str(rec["instruction"])[:500])

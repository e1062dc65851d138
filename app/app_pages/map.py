"""Map: the samples of an iteration on a 2-D map of their embeddings; select points to read them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import resources, state
from app.components.charts import render_figure
from app.components.common import dashes
from app.components.jobs import render_job_panel, start_job_button
from app.components.map_view import selected_ids
from app.components.review_view import render_sample_text
from app.components.selection import m_key
from middo_core import review
from middo_core.projections import embeddings_available
from middo_core.signals.thresholds import explain
from middo_core.store.views import sample_signals

SIGNALS = ("loss_pre", "loss_post", "diversity", "quality")
LISTED = 100
REVIEW_FOCUS = "review_focus"  # read by the Review page: the proposal to show first

ctx = state.require()
it = ctx.iteration
st.title(f"Map of D({it})")
c1, c2 = st.columns([1, 2])
method = c1.segmented_control("Projection", ["umap", "tsne"], default="umap", key="map_method",
                              format_func=lambda m: {"umap": "UMAP", "tsne": "t-SNE"}[m]) or "umap"
colour = c2.selectbox("Colour by", ["flag", "origin", "created_in_iteration", *SIGNALS],
                      key="map_colour", format_func=lambda c: c.replace("_", " "))
name = method.upper() if method == "umap" else "t-SNE"

running = render_job_panel(ctx, ("projection",), key="map_job")
mapped = resources.projection(ctx.root, it, method, ctx.version)
if mapped["points"].empty:
    if not running:
        if embeddings_available(ctx.ws, it):
            st.info(f"No {name} map for iteration {it} yet. Compute it in the background: it is "
                    "stored, so this happens once per iteration and method.")
            start_job_button(ctx, "projection", f"Compute the {name} map", {"method": method},
                             key=f"compute_map_{method}")
        else:
            st.info(f"No {name} map for iteration {it}: a map is drawn from the embeddings of the "
                    "diversity diagnosis. Run it on the Diagnose page first.")
    st.stop()

# The flags use the m's of the Diagnose page (or the ones saved with the iteration).
try:
    data = resources.signals(ctx.root, it, ctx.version)
except Exception:
    data = None
m = None
if data is not None:
    record = next((r for r in resources.status(ctx.root, ctx.version)["iterations"] if r["number"] == it), {})
    cfg = ctx.ws.config.selection

    def m_of(axis: str) -> float:
        stored = record.get(f"m_{axis}")
        fallback = stored if stored is not None and stored == stored else getattr(cfg, f"m_{axis}")
        return float(st.session_state.get(m_key(axis, it), fallback))

    m = (m_of("complexity"), m_of("diversity"), m_of("quality"))
elif colour == "flag":
    st.caption("No diagnosis for this iteration: nothing is flagged.")

fig, selection = resources.map_figure(ctx.root, it, method, ctx.version, colour, m)
event = render_figure(fig.figure, key=f"map_{it}_{method}", on_select="rerun",
                      selection_mode=("box", "lasso", "points"))
if fig.note:
    st.caption(fig.note)

picked = selected_ids(event, fig.trace_ids)
if not picked:
    st.caption("Draw a lasso or a box around points (or click one) to read those samples here.")
    st.stop()
st.markdown(f"**{len(picked):,} samples selected**"
            + (f" (the first {LISTED} listed)" if len(picked) > LISTED else ""))
with ctx.ws.store.read() as con:
    rows = sample_signals(con, it, picked[:LISTED])
listed = rows[["id", "instruction", "origin", *SIGNALS]].copy()
listed["instruction"] = listed["instruction"].astype(str).str.slice(0, 120)
st.dataframe(dashes(listed, {c: "{:.3f}" for c in SIGNALS}), hide_index=True, width="stretch",
             height=300, key="map_selected")

records = {r["id"]: r for r in rows.to_dict("records")}
opened = st.selectbox("Open a sample", list(records), index=None, key=f"map_open_{it}",
                      placeholder="Pick a selected sample to read it whole",
                      format_func=lambda i: f"{i} · {str(records[i]['instruction'])[:80]}")
if opened is None:
    st.stop()
rec = records[opened]
with st.container(border=True):
    known = data is not None and selection is not None and opened in set(data[1].ids)
    reasons = explain(pd.Series({"sample_id": opened}), selection, data[1]) if known else []
    st.markdown(f"**Sample {opened}** · {rec['origin']} · "
                + (" · ".join(f"{c} {rec[c]:.3f}" for c in SIGNALS if rec[c] == rec[c]) or "no signals"))
    st.caption("Flagged: " + "; ".join(reasons) if reasons else "Not flagged with the current m's.")
    render_sample_text("Sample", rec)
    proposals = review.review_queue(ctx.ws, it, status=None)
    mine = proposals[proposals["source_id"] == opened] if not proposals.empty else proposals
    if mine.empty:
        st.caption("No proposal for this sample yet: save a selection on the Diagnose page and refine "
                   "the flagged samples.")
    for prop in mine.to_dict("records"):
        if st.button(f"Review its {prop['axis']} proposal ({prop['status']})", key=f"open_{prop['id']}",
                     icon=":material/rate_review:"):
            st.session_state[REVIEW_FOCUS] = prop["id"]
            st.switch_page("app_pages/review.py")

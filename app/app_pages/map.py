"""Map: the samples of an iteration on a 2-D map of their embeddings; select points to read them."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import resources, state
from app.components.charts import render_figure
from app.components.common import dashes
from app.components.jobs import render_job_panel, start_job_button
from app.components.map_view import about, selected_ids, selected_region
from app.components.sample_list import SIGNALS, pick_sample, render_sample
from app.components.selection import m_key
from app.resources import maps
from middo_core.projections import (
    AUTO_MAP_LIMIT,
    DEFAULT_PLACEMENT,
    MAX_FIT,
    PLACEMENTS,
    embeddings_available,
    umap_seconds,
)
from middo_core.selection import Selection, SignalTable

LISTED = 100
PLACEMENT_LABELS = {"transform": "placed by UMAP (slower)", "neighbours": "placed at their nearest neighbours (faster)"}

ctx = state.require()
it = ctx.iteration
st.title(f"Map of D({it})")
c1, c2, c3 = st.columns([1, 1.3, 2])
method = c1.segmented_control("Projection", ["umap", "tsne"], default="umap", key="map_method",
                              format_func=lambda m: {"umap": "UMAP", "tsne": "t-SNE"}[m]) or "umap"
colours = ["flag", "origin", "created_in_iteration", *SIGNALS,
           *resources.other_signal_columns(ctx.root, it, ctx.version)]
colour = c2.selectbox("Colour by", colours, key="map_colour", format_func=lambda c: c.replace("_", " "))
search = c3.text_input("Search", key="map_search", placeholder="a word in the instruction, input or output",
                       help="Marks every sample whose text holds it (case-insensitive) and lists them")
name = method.upper() if method == "umap" else "t-SNE"


def render_no_map() -> None:
    """Why there is no map, and the button that computes it (with its length for a UMAP map)."""
    if not embeddings_available(ctx.ws, it):
        st.info(f"No {name} map for iteration {it}: a map is drawn from the embeddings of the "
                "diversity diagnosis. Run it on the Diagnose page first.")
        return
    drawn = record.get("counts", {}).get("diagnosis", {}).get("map", {})
    why = f"The diagnosis did not draw it: {drawn['reason']}. " if method == "umap" and drawn.get("reason") else ""
    n = len(data[1]) if data is not None else 0
    placement = DEFAULT_PLACEMENT
    if method == "umap" and n > MAX_FIT:
        placement = st.radio(
            f"The other {n - MAX_FIT:,} points", PLACEMENTS, index=PLACEMENTS.index(DEFAULT_PLACEMENT),
            key="map_placement", horizontal=True, format_func=lambda p: PLACEMENT_LABELS[p],
            help=f"UMAP is fitted on {MAX_FIT:,} samples; the rest are placed on that map "
                 "(docs/SCALING.md compares the two)")
    length = (f" (about {about(umap_seconds(n, placement=placement))} for {n:,} samples)"
              if method == "umap" and n else "")
    st.info(f"No {name} map for iteration {it} yet. {why}Compute it in the background{length}: it "
            "is stored, so this happens once per iteration and method.")
    start_job_button(ctx, "projection", f"Compute the {name} map", {"method": method, "placement": placement},
                     key=f"compute_map_{method}")


# A diagnosis draws the UMAP map of a small D(i) itself: while one runs, the map is on its way.
running = render_job_panel(ctx, ("projection", "diagnose"), key="map_job")
mapped = maps.projection(ctx.root, it, method, ctx.version)
try:
    data = resources.signals(ctx.root, it, ctx.version)
except Exception:
    data = None
record = next((r for r in resources.status(ctx.root, ctx.version)["iterations"] if r["number"] == it), {})
if mapped["points"].empty:
    if running:
        by_diagnosis = (f" (a diagnosis of up to {AUTO_MAP_LIMIT:,} samples draws the UMAP map "
                        "itself)") if method == "umap" else ""
        st.info(f"A background run for D({it}) is under way: its progress is in the banner above. "
                f"The {name} map appears here once it is drawn{by_diagnosis}.")
    else:
        render_no_map()
    st.stop()
if running:  # a new map (of this or another method) may be on its way: this one stays until it lands
    st.caption(f"A background run for D({it}) is under way (its progress is in the banner above); "
               f"the stored {name} map below stays usable until a new one replaces it.")

# The flags use the m's of the Diagnose page (or the ones saved with the iteration).
m = None
if data is not None:
    cfg = ctx.ws.config.selection

    def m_of(axis: str) -> float:
        stored = record.get(f"m_{axis}")
        fallback = stored if stored is not None and stored == stored else getattr(cfg, f"m_{axis}")
        return float(st.session_state.get(m_key(axis, it), fallback))

    m = (m_of("complexity"), m_of("diversity"), m_of("quality"))
elif colour == "flag":
    st.caption("No diagnosis for this iteration: nothing is flagged.")

view_key = f"map_view_{it}_{method}"  # the part of the image drawn, after "Zoom to the selection"
fig, selection = maps.map_figure(ctx.root, it, method, ctx.version, colour, m, search,
                                      st.session_state.get(view_key))
# An image answers a box or a lasso only (its outline comes back); points answer a click too
event = render_figure(fig.figure, key=f"map_{it}_{method}", on_select="rerun",
                      selection_mode=("box", "lasso") if fig.image else ("box", "lasso", "points"))
if fig.note:
    st.caption(fig.note)

if fig.image:
    region = selected_region(event)
    rows = maps.map_region(ctx.root, it, method, ctx.version, region) if region else None
    z1, z2, _ = st.columns([1, 1, 3])
    if region and z1.button("Zoom to the selection", icon=":material/zoom_in:", key="map_zoom_in",
                            help="Draws the image again over the selection only, at full detail"):
        st.session_state[view_key] = maps.map_zoom(ctx.root, it, method, ctx.version, region)
        st.rerun()
    if st.session_state.get(view_key) and z2.button("Whole map", icon=":material/zoom_out_map:",
                                                   key="map_zoom_out"):
        del st.session_state[view_key]
        st.rerun()
else:
    ids = selected_ids(event, fig.trace_ids)
    rows = maps.map_rows(ctx.root, it, method, ctx.version, ids) if ids else None
chosen = rows is not None
found = maps.search_positions(ctx.root, it, method, search, ctx.version)
if found is not None:
    rows = found if rows is None else np.intersect1d(rows, found)
if rows is None:
    st.caption("Draw a lasso or a box around points" + ("" if fig.image else " (or click one)")
               + " to read those samples here.")
    st.stop()
what = ("selected and found by the search" if chosen and found is not None
        else "selected" if chosen else "found by the search")
if not len(rows):
    st.markdown(f"**0 samples {what}**")
    st.stop()
picked = maps.map_ids(ctx.root, it, method, ctx.version, rows, selection, LISTED)
st.markdown(f"**{len(rows):,} samples {what}**"
            + (f" (the first {LISTED} listed, flagged ones first)" if len(rows) > LISTED else ""))
rows = resources.sample_signals(ctx.root, it, tuple(picked), ctx.version)
listed = rows[["id", "instruction", "origin", *SIGNALS]].copy()
listed["instruction"] = listed["instruction"].astype(str).str.slice(0, 120)
st.dataframe(dashes(listed, {c: "{:.3f}" for c in SIGNALS}), hide_index=True, width="stretch",
             height=300, key="map_selected")


@st.fragment
def open_one(ctx: state.Context, it: int, records: dict[str, dict], labels: dict[str, str],
             selection: Selection | None, table: SignalTable | None) -> None:
    """The picker and the sample it opens: a pick reruns this alone, not the map above it (the
    figure, the region's rows and the list)."""
    opened = pick_sample(labels, key=f"map_open_{it}")
    if opened is not None:
        render_sample(ctx, it, records[opened], selection, table)


records = {r["id"]: r for r in rows.to_dict("records")}
open_one(ctx, it, records, {i: records[i]["instruction"] for i in picked if i in records}, selection,
         data[1] if data is not None else None)

"""Histogram drill-down on the Diagnose page: a click on a bar lists the samples in its bin.

A click (a plotly selection event) records which bin of which signal was picked. Below that
chart's group the page then shows how many samples the bin holds, a table of them read from the
store one page at a time (so a bin of 200,000 samples lists as fast as one of 20), and a picker
that opens one whole, as on the Map page. Only the last bar clicked is listed: clicking another
chart clears the bar picked before it. The pick belongs to one iteration (and compare iteration,
whose values share the bins): choosing another clears it.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app import resources, state
from app.components.charts import Figure, render_figure
from app.components.common import dashes
from app.components.sample_list import SIGNALS as SIGNAL_COLUMNS
from app.components.sample_list import pick_sample, render_sample
from middo_core import summaries
from middo_core.selection import Selection, SignalTable

PICKED = "drilldown_bin"  # {"iteration", "compare", "column", "bins", "group", "index"}
GENERATION = "drilldown_generation"  # column -> n: a new chart key drops that chart's selection
APP_RERUN = "drilldown_app_rerun"  # a click in the fragment cleared a list drawn outside it
AXIS_CHARTS, METRIC_CHARTS = "axes", "quality metrics"  # the two groups of charts, each listing below itself
PAGE_SIZE = 50
LABELS = {"loss_pre": "L_pre", "loss_post": "L_post"}


def label(column: str) -> str:
    return LABELS.get(column, column.replace("_", " "))


def render_histogram(fig: Figure, column: str, iteration: int, compare: int | None, bins: int,
                     group: str) -> None:
    """A histogram whose bars can be clicked to list the samples in them."""
    key = f"hist_{column}_{iteration}_{st.session_state.get(GENERATION, {}).get(column, 0)}"
    fig["layout"]["clickmode"] = "event+select"
    fig["layout"]["hovermode"] = "closest"  # a click picks the bar under the pointer
    render_figure(fig, key=key, on_select=partial(_clicked, key, column, iteration, compare, bins, group),
                  selection_mode=("points",))


def _clicked(key: str, column: str, iteration: int, compare: int | None, bins: int, group: str) -> None:
    """The chart's selection changed: pick its bar, or drop the pick when it was deselected."""
    event = st.session_state.get(key) or {}
    points = (event.get("selection") or {}).get("points") or []
    before = st.session_state.get(PICKED)
    index = points[-1].get("point_index", points[-1].get("point_number")) if points else None
    if index is None:
        if before and before["column"] == column:
            del st.session_state[PICKED]
        return
    if before and before["column"] != column:
        _forget_chart(before["column"])
        if before["group"] != group and group == AXIS_CHARTS:  # its list is drawn outside the fragment
            st.session_state[APP_RERUN] = True
    st.session_state[PICKED] = {"iteration": iteration, "compare": compare, "column": column,
                                "bins": bins, "group": group, "index": int(index)}


def _forget_chart(column: str) -> None:
    """Draw the chart of `column` afresh (a new key): its bar no longer shows as picked."""
    generations = st.session_state.setdefault(GENERATION, {})
    generations[column] = generations.get(column, 0) + 1


def _close() -> None:
    picked = st.session_state.pop(PICKED, None)
    if picked:
        _forget_chart(picked["column"])


def picked_bin(iteration: int, compare: int | None) -> dict | None:
    """The bar picked for this iteration and compare iteration; a pick for others is dropped."""
    picked = st.session_state.get(PICKED)
    if picked and (picked["iteration"], picked["compare"]) != (iteration, compare):
        _forget_chart(picked["column"])
        del st.session_state[PICKED]
        return None
    return picked


def span(lo: float, hi: float) -> str:
    """'2.10–2.35': enough decimals to tell the bin's edges apart (at least two)."""
    width = abs(hi - lo)
    digits = 2 if width <= 0 else max(2, 1 - math.floor(math.log10(width)))
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


def render_drilldown(ctx: state.Context, group: str, selection: Selection, table: SignalTable) -> None:
    """The samples of the picked bar, when it is one of `group`'s charts: count, table, one opened."""
    if group == AXIS_CHARTS and st.session_state.pop(APP_RERUN, False):
        st.rerun(scope="app")
    picked = picked_bin(ctx.iteration, ctx.compare)
    if picked is None or picked["group"] != group:
        return
    column, it = picked["column"], ctx.iteration
    edges = resources.histograms(ctx.root, it, ctx.compare, ctx.version, (column,),
                                 bins=picked["bins"])[column]["edges"]
    i = picked["index"]
    if i >= len(edges) - 1:  # the bins changed under the pick (a new diagnosis)
        del st.session_state[PICKED]
        return
    lo, hi, last = float(edges[i]), float(edges[i + 1]), i == len(edges) - 2
    page_key = f"drilldown_page_{it}_{column}_{i}"
    page = int(st.session_state.get(page_key) or 1)
    count, rows = resources.bin_samples(ctx.root, it, column, lo, hi, last, PAGE_SIZE,
                                        (page - 1) * PAGE_SIZE, ctx.version)
    with st.container(border=True, key="drilldown"):
        head, close = st.columns([6, 1], vertical_alignment="center")
        head.markdown(f"**{count:,} samples with {label(column)} in {span(lo, hi)}, iteration {it}**")
        close.button("Close", key="drilldown_close", on_click=_close, icon=":material/close:",
                     help="Hide this list (or click another bar)")
        if count == 0:
            st.caption(f"No sample of D({it}) falls in this bar; click a bar with samples in it.")
            return
        _render_table(ctx, column, rows, selection)
        pages = -(-count // PAGE_SIZE)
        if pages > 1:
            st.number_input(f"Page (of {pages:,}, {PAGE_SIZE} samples each)", min_value=1,
                            max_value=pages, step=1, key=page_key)
        _open_one(ctx, dict(zip(rows["id"], rows["instruction"], strict=True)),
                  f"drilldown_open_{it}_{column}_{i}_{page}", selection, table)


@st.fragment
def _open_one(ctx: state.Context, labels: dict[str, str], key: str, selection: Selection,
              table: SignalTable) -> None:
    """The picker and the sample it opens: a pick reruns this alone, not the charts above it."""
    opened = pick_sample(labels, key=key)
    rec = resources.sample_record(ctx.root, ctx.iteration, opened, ctx.version) if opened else None
    if rec is not None:
        render_sample(ctx, ctx.iteration, rec, selection, table)


def _render_table(ctx: state.Context, column: str, rows: pd.DataFrame, selection: Selection) -> None:
    index = resources.signal_index(ctx.root, ctx.iteration, ctx.version)
    ids = rows["id"].to_numpy(dtype=object)
    flags = summaries.flag_labels(selection.ids, selection.masks, ids, pos=index.get_indexer(ids)) \
        if index is not None else np.full(len(ids), "not flagged", dtype=object)
    name = label(column)
    listed = pd.DataFrame({"id": ids, "instruction": rows["instruction"].astype(str),
                           name: rows["value"], "flagged": flags})
    digits = "{:.3f}" if column in SIGNAL_COLUMNS else "{:.4g}"  # a 0-10 rating: "7", not "7.000"
    st.dataframe(dashes(listed, {name: digits}), hide_index=True, width="stretch",
                 height=min(38 + 35 * len(listed), 390), key="drilldown_table")

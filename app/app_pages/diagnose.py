"""Diagnose: run the signals, then choose how much to flag with one m per axis."""

from __future__ import annotations

import streamlit as st

from app import resources, state
from app.components.common import render_error
from app.components.drilldown import AXIS_CHARTS, METRIC_CHARTS, render_drilldown
from app.components.jobs import render_job_panel, start_job_button
from app.components.selection import (
    m_key,
    render_axis,
    render_loss_scatter,
    render_other_signals,
    render_quality_metrics,
    render_strip,
)
from app.components.signin import denied, who
from middo_core.selection import AXES, auto_m, save_selection

QUALITY_MODES = {"logprobs": "self-judged", "generate": "self-judged", "pmi": "relevance × completion",
                 "pmi-ppl": "relevance × completion × plausibility",
                 "pmi-novel": "relevance × completion × plausibility × own words"}

ctx = state.require()
it = ctx.iteration
st.title(f"Diagnose D({it})")
cfg = ctx.ws.config
axes = tuple(a for a in AXES if a in cfg.loop.axes)

running = render_job_panel(ctx, ("diagnose",), key="diagnose_job")
try:
    data = resources.signals(ctx.root, it, ctx.version)
except Exception as exc:
    render_error(exc, "Could not load the signals")
    st.stop()

if data is None:
    if running:
        st.info(f"The distributions of D({it}) appear here as soon as the background run has "
                "stored its diagnosis (its progress is in the banner above).")
    else:
        st.info(f"No diagnosis yet for iteration {it}. Run it: the model scores every sample of "
                f"D({it}) for complexity, diversity and quality (this runs in the background).")
        chosen = st.multiselect("Signals", AXES, default=list(axes), key="diagnose_signals")
        start_job_button(ctx, "diagnose", f"Diagnose D({it})", {"signals": chosen},
                         disabled=not chosen)
    st.stop()

frame, table = data
record = next((r for r in resources.status(ctx.root, ctx.version)["iterations"] if r["number"] == it), {})
for axis in axes:  # first visit: the stored m's of this iteration, else the config's defaults
    key = m_key(axis, it)
    if key not in st.session_state:
        stored = record.get(f"m_{axis}")
        default = getattr(cfg.selection, f"m_{axis}")
        st.session_state[key] = float(stored if stored is not None and stored == stored else default)


quality_run = record.get("counts", {}).get("diagnosis", {}).get("quality") or {}
quality_title = None
if quality_run.get("mode"):
    quality_title = f"Quality ({QUALITY_MODES.get(quality_run['mode'], quality_run['mode'])}, 0-10)"


def use_auto_m() -> None:
    chosen = auto_m(table, target=cfg.selection.target_fraction, axes=axes)
    for axis in axes:
        st.session_state[m_key(axis, it)] = float(chosen.m[axis])


def current_selection():
    m = {a: st.session_state.get(m_key(a, it), getattr(cfg.selection, f"m_{a}")) for a in AXES}
    return table.select(m["complexity"], m["diversity"], m["quality"], axes=axes)


@st.fragment
def selection_panel() -> None:
    version = ctx.version
    selection = current_selection()
    counts = selection.counts()
    render_strip(counts)
    for warning in counts["warnings"]:
        st.warning(warning, icon=":material/warning:")
    health = resources.health(ctx.root, it, version, selection.m)
    precision = resources.verdict_precision(ctx.root, it, version, selection.m)
    columns = st.columns(len(axes))
    for axis, column in zip(axes, columns, strict=True):
        with column:
            render_axis(axis, ctx.root, it, ctx.compare, version, selection, counts, health,
                        precision, title=quality_title if axis == "quality" else None)
    render_drilldown(ctx, AXIS_CHARTS, selection, table)  # a clicked bar's samples, below the charts
    b1, b2, b3 = st.columns([1, 1, 2])
    b1.button("Auto m", on_click=use_auto_m, icon=":material/auto_fix:",
              help=f"The mildest m's that flag about {cfg.selection.target_fraction:.0%} in total")
    refused = denied(ctx.ws, "select")
    if b2.button("Save selection", type="primary", icon=":material/save:", disabled=bool(refused),
                 help=refused):
        try:
            save_selection(ctx.ws, it, selection, actor=who())
        except Exception as exc:
            render_error(exc, "Could not save the selection")
        else:
            st.toast(f"Saved: {counts['union']:,} samples flagged in D({it})")
            st.rerun(scope="app")
    saved = record.get("counts", {}).get("selection")
    if saved:
        b3.caption(f"Saved selection: {saved['union']:,} flagged with m = "
                   + ", ".join(f"{a} {v:+.2f}" for a, v in saved.get("m", {}).items()))
    if "complexity" in axes:
        left, right = st.columns([3, 2])
        with left:
            render_loss_scatter(ctx.root, it, version, selection)
        right.caption("A sample is complex when its loss is above τ both before training (L_pre, "
                      "base model) and after (L_post, fine-tuned): the shaded corner. Samples the "
                      "model learns easily fall below the dashed L_post line.")


st.caption(f"{len(table):,} samples of D({it}) diagnosed. Move an m to see what it flags; "
           "nothing is recomputed. Click a bar to list its samples. Save the selection, then "
           "refine the flagged samples.")
selection_panel()
if quality_run.get("reason"):
    away = "" if "logprobs" in quality_run["reason"] else (
        " The paper's self-judge is one setting away: signals.quality_mode: logprobs.")
    st.caption(f"Quality signal: {quality_run['mode']}. Why: {quality_run['reason']}.{away}")
if "quality" in axes:  # the six ratings do not depend on m: drawn outside the slider fragment
    metrics = st.expander("Quality: the six metrics", expanded=False, key="quality_metrics",
                          on_change="rerun")
    if metrics.open:  # six charts drawn only when asked for, not on every load of the page
        with metrics:
            render_quality_metrics(ctx.root, it, ctx.compare, ctx.version)
            render_drilldown(ctx, METRIC_CHARTS, current_selection(), table)

render_other_signals(ctx.root, it, ctx.compare, ctx.version)  # any registered signal's columns

if record.get("counts", {}).get("selection"):
    st.divider()
    refining = render_job_panel(ctx, ("refine",), key="refine_job")
    if not refining:
        start_job_button(ctx, "refine", "Refine the flagged samples", key="start_refine",
                         help="An LLM writes a proposal per flagged sample; review them on the Review page")

"""The Diagnose page's selection panel: one column per axis, histogram, threshold, m slider."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import resources
from app.components.charts import histogram_figure, loss_scatter_figure, render_figure
from app.components.common import fmt_pct
from app.components.drilldown import AXIS_CHARTS, METRIC_CHARTS, render_histogram
from middo_core.selection import Selection

TARGET_BAND = (0.10, 0.20)
SLIDER_RANGE = {"complexity": (-1.0, 4.0), "diversity": (-6.0, 1.0), "quality": (-6.0, 1.0)}
AXIS_TITLES = {"complexity": "Complexity (loss)", "diversity": "Diversity (kNN similarity)",
               "quality": "Quality (self-judged, 0-10)"}
QUALITY_METRICS = ("instruction_clarity", "instruction_completeness", "instruction_factuality",
                   "response_clarity", "response_completeness", "response_factuality")
SCATTER_POINTS = 4000
AXIS_BINS, METRIC_BINS = 50, 11


def m_key(axis: str, iteration: int) -> str:
    return f"m_{axis}_{iteration}"


def render_strip(counts: dict) -> None:
    """Union flagged, the overlaps, and the 10-20% target band (green when inside)."""
    frac = counts["union_fraction"]
    lo, hi = TARGET_BAND
    cols = st.columns([1.2, 2, 2])
    cols[0].metric("Union flagged", f"{counts['union']:,} ({fmt_pct(frac)})",
                   help="Samples flagged on at least one axis")
    with cols[1]:
        text = f"{counts['union']:,} of {counts['n']:,} samples flagged ({fmt_pct(frac)})"
        if lo <= frac <= hi:
            st.success(f"{text}: inside the {lo:.0%}–{hi:.0%} target band", icon=":material/check_circle:")
        else:
            side = "below" if frac < lo else "above"
            st.warning(f"{text}: {side} the {lo:.0%}–{hi:.0%} target band", icon=":material/info:")
    with cols[2]:
        overlaps = counts.get("overlaps") or {}
        if overlaps:
            st.caption("Overlaps: " + " · ".join(f"{k.replace('&', ' & ')} {v:,}" for k, v in overlaps.items()))


BADGE = {"good": ("green", ":material/verified:"), "weak": ("orange", ":material/warning:"),
         "uncertain": ("gray", ":material/help:"), "near chance": ("red", ":material/error:")}


def render_health(axis: str, health, precision) -> None:
    """The axis's power on this data: canary AUROC and recall at m, the curators' precision."""
    h = health.axes.get(axis) if health is not None else None
    if h is None or h.auroc is None:
        st.caption("Health: no canaries in this diagnosis (rerun it to measure this signal).")
    else:
        colour, icon = BADGE[h.status]
        st.badge(f"{h.status}: AUROC {h.auroc:.2f}", color=colour, icon=icon)
        recall = f"{h.recall:.0%}" if h.recall is not None else "–"
        st.caption(f"On {h.n} canaries (synthetic {axis} defects made from this data) against "
                   f"their clean sources; this m flags {recall} of them.",
                   help="AUROC 1.0: every canary looks worse than every clean source; 0.5: "
                        "chance. `middo signals DIR --health` lists each kind.")
        if h.status == "near chance":
            st.warning(h.message, icon=":material/error:")
        elif h.status in ("uncertain", "weak"):
            st.caption(h.message)
    p = precision.get(axis) if precision else None
    if p is not None and p.marked:
        shown = f"{p.precision:.0%}" if p.precision is not None else "–"
        hint = f"; they suggest m = {p.suggested_m:+.2f}" if p.suggested_m is not None else ""
        alarms = f"{p.false_alarm} false alarm" + ("" if p.false_alarm == 1 else "s")
        st.caption(f"Curators' verdicts: precision {shown} at this m ({p.real} real, {alarms} "
                   f"among the flagged; {p.marked} marked){hint}.")


def render_axis(axis: str, root: str, iteration: int, compare: int | None, version: int,
                selection: Selection, counts: dict, health=None, precision=None,
                title: str | None = None) -> None:
    hists = resources.histograms(root, iteration, compare, version,
                                 ("loss_pre", "loss_post", "diversity", "quality"), bins=AXIS_BINS)
    th = selection.thresholds
    st.markdown(f"#### {title or AXIS_TITLES[axis]}")
    render_health(axis, health, precision)
    if axis == "complexity":
        for col, name in (("loss_pre", "L_pre"), ("loss_post", "L_post")):
            fig = histogram_figure(f"{name} per sample, iteration {iteration}", name, hists[col],
                                   iteration, compare, [(th.get(f"tau_{col}"), f"τ {th.get(f'tau_{col}', 0):.2f}")],
                                   height=200)
            render_histogram(fig, col, iteration, compare, AXIS_BINS, AXIS_CHARTS)
    elif not hists[axis]["current"].sum():
        st.info(f"No {axis} scores for iteration {iteration}: diagnose {axis} to use this axis.")
    else:
        tau = th.get(f"tau_{axis}")
        fig = histogram_figure(f"{axis.capitalize()} score per sample, iteration {iteration}", axis,
                               hists[axis], iteration, compare,
                               [(tau, f"τ {tau:.2f}" if tau is not None else "")], height=400)
        render_histogram(fig, axis, iteration, compare, AXIS_BINS, AXIS_CHARTS)
    lo, hi = SLIDER_RANGE[axis]
    st.slider(f"m for {axis}", lo, hi, step=0.05, key=m_key(axis, iteration),
              help="τ = μ + m·σ. " + ("Flags samples above τ on both losses." if axis == "complexity"
                                     else "Flags samples below τ."))
    n = counts["flagged"].get(axis, 0)
    st.markdown(f"**{n:,} flagged ({fmt_pct(counts['fraction'].get(axis, 0.0))})**")


def render_loss_scatter(root: str, iteration: int, version: int, selection: Selection) -> None:
    data = resources.signals(root, iteration, version)
    table = data[1]
    idx = resources.scatter_subset(root, iteration, version, SCATTER_POINTS)
    pre, post = table.values["loss_pre"][idx], table.values["loss_post"][idx]
    if not np.isfinite(pre).any():
        st.info(f"No losses for iteration {iteration}: run the complexity diagnosis.")
        return
    flagged = selection.masks.get("complexity", np.zeros(len(table), bool))[idx]
    th = selection.thresholds
    fig = loss_scatter_figure(pre, post, flagged, th.get("tau_loss_pre", np.nan),
                              th.get("tau_loss_post", np.nan), iteration, len(table))
    render_figure(fig, key=f"loss_scatter_{iteration}")


def render_quality_metrics(root: str, iteration: int, compare: int | None, version: int) -> None:
    frame = resources.signals(root, iteration, version)[0]
    present = tuple(c for c in QUALITY_METRICS if c in frame and frame[c].notna().any())
    if not present:
        st.caption("No per-metric quality ratings stored for this iteration.")
        return
    hists = resources.histograms(root, iteration, compare, version, present, bins=METRIC_BINS)
    cols = st.columns(3)
    for i, col in enumerate(present):
        with cols[i % 3]:
            fig = histogram_figure(f"{col.replace('_', ' ')}, iteration {iteration}", "rating 0-10",
                                   hists[col], iteration, compare, height=200)
            render_histogram(fig, col, iteration, compare, METRIC_BINS, METRIC_CHARTS)


def render_other_signals(root: str, iteration: int, compare: int | None, version: int) -> None:
    """A histogram per numeric column of the signals beyond the three axes (registered signals)."""
    present = resources.other_signal_columns(root, iteration, version)
    if not present:
        return
    st.subheader("Other signals")
    hists = resources.histograms(root, iteration, compare, version, present, bins=AXIS_BINS)
    cols = st.columns(min(3, len(present)))
    for i, col in enumerate(present):
        with cols[i % len(cols)]:
            fig = histogram_figure(f"{col.replace('_', ' ')}, iteration {iteration}", col,
                                   hists[col], iteration, compare, height=220)
            render_figure(fig, key=f"other_{col}_{iteration}")

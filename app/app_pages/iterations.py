"""Iterations: run the next one in the background, the paper's tables, charts, lineage, ablations."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import resources, state
from app.components.agreement_view import render_agreement
from app.components.charts import histogram_figure, line_figure, render_figure
from app.components.common import COUNT, dashes, render_best, render_error
from app.components.jobs import render_job_panel, start_job_button
from app.components.review_view import render_sample_text
from app.components.signin import denied, who
from middo_core import loop, tables
from middo_core.build import lineage
from middo_core.jobs.lock import run_lock
from middo_core.variants import list_variants

ctx = state.require()
it = ctx.iteration
st.title("Iterations")

# --- the running job, or the buttons that start one -------------------------------------------
running = render_job_panel(ctx, ("loop", "train", "evaluate", "build"), key="iterations_job")
if not running:
    states = resources.loop_state(ctx.root, it, ctx.version)[0]
    decisions = resources.review_counts(ctx.root, it, ctx.version)
    pending = sum(by.get("pending", 0) for by in decisions.values())
    next_size = resources.status(ctx.root, ctx.version)["dataset_sizes"].get(str(it + 1), {}).get("train")
    buildable = not next_size and (states.get("reviewed") or (decisions and not pending))
    if next_size:
        st.success(f"D({it + 1}) is built: {next_size:,} samples. Pick iteration {it + 1} in the "
                   "sidebar to go on.")
    elif not buildable:
        st.caption(f"D({it + 1}) can be built once every proposal of D({it}) is reviewed"
                   + (f" ({pending:,} pending)." if pending else "."))
    with st.container(horizontal=True, vertical_alignment="center", key="iteration_actions"):
        refused = denied(ctx.ws, "build")
        if buildable and st.button(f"Build D({it + 1})", type="primary", key="build_next", disabled=bool(refused),
                                   help=refused or "Replace accepted hard and low-quality samples, add accepted new ones"):
            try:
                with run_lock(ctx.ws, "build", f"Studio: build D({it + 1})"):
                    report = loop.build_step(ctx.ws, it, who())
            except Exception as exc:
                render_error(exc, f"Could not build D({it + 1})")
            else:
                st.toast(f"Built D({it + 1}): {report.size_after:,} samples")
                st.rerun()
        start_job_button(ctx, "train", f"Train M({it}) on D({it})", key="start_train",
                         disabled=not states.get("built") or states.get("trained"))
        start_job_button(ctx, "evaluate", f"Evaluate M({it})", key="start_evaluate",
                         disabled=not states.get("trained") or states.get("evaluated"))
        start_job_button(ctx, "loop", f"Run the loop through iteration {it + 1} in the background",
                         {"iterations": it + 1}, key="start_loop",
                         help="Every step not yet done: train, evaluate, diagnose, select, refine, "
                              "review (stops for a manual review), build")

# --- the paper's tables ---------------------------------------------------------------------------
left, right = st.columns(2)
with left:
    st.markdown("**Samples flagged per axis and dataset size (paper Table 6)**")
    table6, table1 = resources.paper_tables(ctx.root, ctx.version)
    st.dataframe(dashes(table6, {c: COUNT for c in table6.columns if c != "iteration"}),
                 hide_index=True, width="stretch")
with right:
    st.markdown("**Benchmark scores per iteration, best in green (paper Table 1)**")
    if table1.empty:
        st.info("No scores yet. Train and evaluate M(0) to fill this table.")
    else:
        st.dataframe(render_best(table1), width="stretch")

# --- charts ---------------------------------------------------------------------------------------
scores, summary = resources.metrics_and_summary(ctx.root, ctx.version)
c1, c2, c3 = st.columns(3)
with c1:
    if not scores.empty:
        wide = scores.pivot_table(index="iteration", columns="benchmark", values="value").reset_index()
        fig = line_figure(wide, "iteration", [c for c in wide.columns if c != "iteration"],
                          "Benchmark scores per iteration", "score")
        render_figure(fig, key="chart_scores")
    else:
        st.caption("Benchmark scores appear here after an evaluation.")
with c2:
    if summary["mean_quality"].notna().any():
        fig = line_figure(summary, "iteration", ["mean_quality"], "Mean quality per iteration",
                          "quality (0-10)")
        render_figure(fig, key="chart_quality")
    if not summary.empty:
        fig = line_figure(summary, "iteration", ["max_loss_post", "mean_loss_post"],
                          "Loss under the fine-tuned model per iteration", "loss")
        render_figure(fig, key="chart_loss")
    else:
        st.caption("Signal summaries appear here after a diagnosis.")
with c3:
    try:
        hists = resources.histograms(ctx.root, it, ctx.compare, ctx.version, ("loss_post",))
    except Exception:
        hists = None
    if hists and hists["loss_post"]["current"].sum():
        title = f"L_post distribution, iteration {it}" + (
            f" vs {ctx.compare}" if ctx.compare is not None else " (pick a compare iteration)")
        render_figure(histogram_figure(title, "L_post", hists["loss_post"], it, ctx.compare),
                      key="chart_loss_shift")

# --- agreement between curators (review overlap) ---------------------------------------------------
render_agreement(ctx)

# --- lineage --------------------------------------------------------------------------------------
with st.expander("Lineage of a sample"):
    sample_id = st.text_input("Sample id", key="lineage_id", placeholder="16 hex digits").strip()
    if sample_id:
        chain = lineage(ctx.ws, sample_id)
        if not chain:
            st.info(f"No sample with id {sample_id}.")
        for i, rec in enumerate(chain):
            versions = ", ".join(f"D({v})" for v in rec.get("versions", [])) or "no version"
            st.caption(f"{'this sample' if i == 0 else 'its parent'} · {rec['id']} · "
                       f"{rec['origin']} · in {versions}")
            for v in rec.get("verdicts", []):
                st.caption(f"verdict in iteration {v['iteration']} on its {v['axis']} flag: "
                           f"{v['verdict'].replace('_', ' ')} ({v['actor']})")
            render_sample_text("Sample" if i == 0 else "Parent", rec)

# --- ablations and the random control ---------------------------------------------------------------
children = list_variants(ctx.ws)
if children:
    st.markdown("**Ablations and controls: benchmark scores side by side**")
    frames = {"main": tables.metrics_table(ctx.ws)}
    for child in children:
        frames[child.root.name] = tables.metrics_table(child)
    frames = {k: v for k, v in frames.items() if not v.empty}
    if frames:
        side = pd.concat(frames, axis=1)
        st.dataframe(render_best(side), width="stretch")
    cols = st.columns(len(children))
    for col, child in zip(cols, children, strict=True):
        with col:
            st.caption(f"{child.root.name}: samples flagged per iteration")
            child6 = tables.iteration_table(child)
            st.dataframe(dashes(child6, {c: COUNT for c in child6.columns if c != "iteration"}),
                         hide_index=True)

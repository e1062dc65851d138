"""The activity banner at the top of every page: what runs in the background, how far it is, how
long it has left, and a cancel button. It polls from a fragment, so the page stays usable, and
redraws the whole page when a run moves to its next stage or ends, so each page fills in as the
work it shows lands (the distributions once the diagnosis is stored, the map once it is drawn).

On a workspace that asks for it (the built-in demo: loop.autostart) with nothing done yet, the
first page opened starts iteration 0 in the background (middo_core.loop.autostart)."""

from __future__ import annotations

import streamlit as st

from app import state
from app.components.common import render_error
from app.components.jobs import ACTIVE, POLL_S, render_job_status
from app.components.signin import denied, who
from middo_core.access import run_action
from middo_core.jobs import active_jobs, cancel_job, job_status
from middo_core.jobs.lock import describe, holder

SIGNATURE_KEY = "activity_signature"
KIND_LABELS = {
    "first_iteration": "Iteration 0",
    "loop": "The loop",
    "train": "Training",
    "evaluate": "Evaluation",
    "diagnose": "Diagnosis",
    "refine": "Refinement",
    "projection": "The map",
    "import": "Import",
    "serve": "The vLLM server",
    "search_index": "The search index",
}
FIRST_ITERATION_NOTE = ("This demo workspace had nothing done yet, so the Studio started iteration 0 "
                        "by itself: train M(0), diagnose D(0) and draw its map, then evaluate M(0). "
                        "Each page fills in as its step lands.")


def render_activity(ctx: state.Context) -> None:
    """The banner (nothing when no run is active), after starting iteration 0 where it is due."""
    _autostart(ctx)
    try:
        active = [r["id"] for r in active_jobs(ctx.ws)]
    except Exception as exc:  # a busy or damaged store must not take every page down
        render_error(exc, "Could not read the background runs")
        return
    if active:
        _banner(ctx, tuple(active))
        return
    st.session_state.pop(SIGNATURE_KEY, None)
    owner = holder(ctx.ws)
    if owner and not owner.get("run_id"):  # a command (`middo loop`) at work on this workspace
        st.info(f"{describe(owner)} is at work on this workspace: runs that train, diagnose, refine "
                "or build can start once it ends. The pages show what it has stored so far.",
                icon=":material/lock:")


def _autostart(ctx: state.Context) -> None:
    key = f"autostart_checked:{ctx.root}"
    if st.session_state.get(key) or not ctx.ws.config.loop.autostart or denied(ctx.ws, "run"):
        return  # a signed-in user who may not start runs leaves it to the owner
    st.session_state[key] = True  # once per session: a cancelled run is not started again
    from middo_core.loop import autostart

    try:
        run_id = autostart(ctx.ws, who())
    except Exception as exc:
        render_error(exc, "Could not start iteration 0 in the background")
        return
    if run_id:
        st.toast("Started iteration 0 in the background", icon=":material/play_circle:")


def _banner(ctx: state.Context, run_ids: tuple[str, ...]) -> None:
    @st.fragment(run_every=POLL_S)
    def banner() -> None:
        statuses = []
        for run_id in run_ids:
            try:
                statuses.append(job_status(ctx.ws, run_id))
            except Exception as exc:
                render_error(exc, "Could not read the job's progress")
                return
        for status in statuses:  # first, so that a click on Cancel is never lost to a redraw
            _render_run(ctx, status)
        signature = tuple((s.get("status"), (s.get("progress") or {}).get("stage")) for s in statuses)
        before = st.session_state.get(SIGNATURE_KEY)
        st.session_state[SIGNATURE_KEY] = signature
        if before is not None and before != signature:
            st.rerun(scope="app")  # a step landed or a run ended: redraw the page with it

    with st.container(border=True, key="activity_banner"):
        banner()


def _render_run(ctx: state.Context, status: dict) -> None:
    run_id, kind = status.get("id", ""), status.get("kind", "")
    iteration = status.get("iteration")
    what = KIND_LABELS.get(kind, kind.capitalize())
    where = f" for iteration {iteration}" if iteration is not None and kind != "first_iteration" else ""
    st.markdown(f"**{what}{where} is running in the background** · run `{run_id}`")
    if kind == "first_iteration":
        st.caption(FIRST_ITERATION_NOTE)
    render_job_status(status, run_id, log_expanded=False)
    refused = denied(ctx.ws, run_action(kind))
    if status.get("status") in ACTIVE and st.button("Cancel", key=f"activity_cancel_{run_id}",
                                                    icon=":material/cancel:", disabled=bool(refused),
                                                    help=refused):
        try:
            cancel_job(ctx.ws, run_id, actor=who())
        except Exception as exc:
            render_error(exc, "Could not cancel the job")
        else:
            st.toast("Cancelling…")

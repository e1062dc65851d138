"""Background jobs in the page: start buttons, and the progress of one run with ETA and log lines.

The work runs in its own process (middo_core.jobs). While it runs, the activity banner at the top
of every page (app/components/activity.py) follows it; a page only learns whether a run that
concerns it is active, and shows how the last one ended.
"""

from __future__ import annotations

import streamlit as st

from app import resources, state
from app.components.common import render_error
from app.components.signin import denied, who
from middo_core.access import run_action
from middo_core.jobs import start_job
from middo_core.progress import format_duration

ACTIVE = ("queued", "running")
POLL_S = 1.0


def start_job_button(ctx: state.Context, kind: str, label: str, args: dict | None = None,
                     key: str | None = None, disabled: bool = False, help: str | None = None) -> None:
    refused = denied(ctx.ws, run_action(kind))  # the button says why; start_job refuses anyway
    if st.button(label, key=key or f"start_{kind}", type="primary", disabled=disabled or bool(refused),
                 help=refused or help):
        try:
            start_job(ctx.ws, kind, ctx.iteration, args or {}, actor=who())
        except Exception as exc:
            render_error(exc, f"Could not start the {kind} job")
        else:
            st.rerun()


# Kinds whose run does the work of others: a page waiting for a diagnosis waits for these too.
COVERS = {"first_iteration": ("train", "evaluate", "diagnose", "projection"),
          "loop": ("train", "evaluate", "diagnose", "refine", "build")}


def active_run(ctx: state.Context, kinds: tuple[str, ...]) -> dict | None:
    """The newest run of `kinds` for this iteration, or of a kind that does their work."""
    wider = tuple(kinds) + tuple(k for k, covered in COVERS.items() if set(covered) & set(kinds))
    return resources.latest_run(ctx.root, ctx.iteration, wider)


def render_job_panel(ctx: state.Context, kinds: tuple[str, ...], key: str) -> bool:
    """True while a run of `kinds` (or one doing their work) is active for this iteration: the
    activity banner shows it. Otherwise says how the last one ended, if it failed or was cancelled."""
    run = active_run(ctx, kinds)
    if run is None:
        return False
    running = run["status"] in ACTIVE
    if not running:
        if run["status"] == "failed":
            st.error(f"The last {run['kind']} job failed: {run.get('error') or 'see its log'}",
                     icon=":material/error:")
        elif run["status"] == "cancelled":
            st.caption(f"The last {run['kind']} job was cancelled.")
        return False
    return True


def render_job_status(status: dict, run_id: str, log_expanded: bool = True) -> None:
    prog = status.get("progress") or {}
    done, total = prog.get("done") or 0, prog.get("total") or 0
    frac = min(done / total, 1.0) if total else 0.0
    parts = [str(prog.get("stage") or status.get("status", "queued"))]
    if total:
        parts.append(f"{done:,} of {total:,}")
    if prog.get("loss") is not None:
        parts.append(f"loss {prog['loss']:.3f}")
    if prog.get("eta_s") is not None:
        parts.append(f"about {format_duration(prog['eta_s'])} left")
    st.progress(frac, text=f"Job {run_id}: " + " · ".join(parts))
    if prog.get("message"):
        st.caption(str(prog["message"]))
    lines = status.get("log") or status.get("log_tail") or status.get("last_lines") or []
    if isinstance(lines, str):
        lines = lines.splitlines()
    if lines and log_expanded:
        st.code("\n".join(lines[-8:]), language=None)
    elif lines:
        with st.expander("Last log lines"):
            st.code("\n".join(lines[-8:]), language=None)

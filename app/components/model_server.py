"""The sidebar's model server box: the vLLM server the product manages for the refiner's model.

Shown when refinement runs on it (refine.backend: vllm, or auto where vLLM is installed) or
while it runs. Starting it is a
background job ("serve"), followed by the activity banner like any run; it outlives the job, is
reused by every refinement and judge run, and stops with the button here or `middo serve stop`.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from app import resources, state
from app.components.common import render_error
from app.components.signin import denied, who
from middo_core.jobs import start_job
from middo_core.llm import resolve_backend

STATE_ICONS = {"up": ":material/check_circle:", "starting": ":material/hourglass_top:",
               "stopped": ":material/radio_button_unchecked:"}


def render_model_server(ctx: state.Context) -> None:
    cfg = ctx.ws.config.refine
    server = resources.model_server(cfg.model)
    if resolve_backend(cfg.backend) != "vllm" and server["state"] == "stopped":
        return
    st.markdown("**Model server** (vLLM)")
    run = resources.latest_run(ctx.root, None, ("serve",))
    starting = run is not None and run["status"] in ("queued", "running")
    line = f"{STATE_ICONS[server['state']]} {cfg.model}: {server['state']}"
    if server["state"] != "stopped":
        since = datetime.fromisoformat(server["started"]).astimezone().strftime("%H:%M")
        line += f" on port {server['port']} since {since} (pid {server['pid']})"
    st.caption(line)
    if server["state"] == "up":
        refused = denied(ctx.ws, "run")
        if st.button("Stop the server", key="stop_model_server", disabled=bool(refused),
                     help=refused or "Frees its memory; the next refinement starts it again (about a minute)"):
            resources.stop_model_server(cfg.model)
            st.rerun()
    elif not server["installed"]:
        st.caption("vLLM's environment is missing: run `make setup` (or `make vllm-env`).")
    elif not starting and server["state"] == "stopped":
        if run is not None and run["status"] == "failed":
            st.error(f"The server did not start: {run.get('error') or 'see its log'}",
                     icon=":material/error:")
        st.caption("Refinement starts it on first use; starting it now saves that minute.")
        refused = denied(ctx.ws, "run")
        if st.button("Start the server", key="start_model_server", disabled=bool(refused), help=refused):
            try:
                start_job(ctx.ws, "serve", None, {"model": cfg.model}, actor=who())
            except Exception as exc:
                render_error(exc, "Could not start the server")
            else:
                st.rerun()
    if server["log_tail"]:
        with st.expander("Server log"):
            st.code("\n".join(server["log_tail"]), language=None)

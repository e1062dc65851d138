"""The sidebar on every page: workspace, iterations, the loop stepper and its next action."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import resources, state
from app.components.common import render_error
from app.components.model_server import render_model_server
from app.components.signin import render_account, signed_in
from middo_core.data.demo import create_demo_workspace
from middo_core.workspace import STORE_FILE, init_workspace

# Which page carries out a next action (matched on a word of the action's text).
ACTION_PAGES = (("diagnos", "diagnose"), ("select", "diagnose"), ("refine", "diagnose"),
                ("review", "review"), ("build", "iterations"), ("train", "iterations"),
                ("evaluat", "iterations"), ("import", "data"))


def open_workspace_path(path: str) -> None:
    st.session_state[state.WS_KEY] = path
    st.session_state["workspace_ok"] = (Path(path) / STORE_FILE).exists()
    for key in (state.IT_KEY, state.CMP_KEY):
        st.session_state.pop(key, None)


def render_workspace_picker() -> None:
    current = st.session_state.get(state.WS_KEY, "")
    path = st.text_input("Workspace folder", value=current, key="workspace_input",
                         placeholder="/path/to/workspace")
    path = path.strip()
    if path and path != current:
        open_workspace_path(path)
    if path and not st.session_state.get("workspace_ok"):
        if (Path(path) / STORE_FILE).exists():
            open_workspace_path(path)
            st.rerun()
        st.caption("No workspace in this folder yet.")
        if st.button("Create a workspace here", key="create_workspace"):
            try:
                init_workspace(Path(path))
            except Exception as exc:
                render_error(exc, "Could not create the workspace")
            else:
                open_workspace_path(path)
                st.rerun()
        if st.button("Create the demo workspace here", key="create_demo"):
            with st.spinner("Writing the demo dataset…"):
                try:
                    create_demo_workspace(Path(path))
                except Exception as exc:
                    render_error(exc, "Could not create the demo workspace")
                else:
                    open_workspace_path(path)
                    st.rerun()


def render_iteration_pickers(ctx_root: str) -> None:
    version = resources.store_version(ctx_root)
    numbers = resources.iteration_numbers(ctx_root, version)
    if not numbers:
        st.caption("No dataset yet: import one on the Data page.")
        numbers = [0]
    if st.session_state.get(state.IT_KEY) not in numbers:
        st.session_state[state.IT_KEY] = numbers[-1]
    st.selectbox("Iteration", numbers, key=state.IT_KEY, format_func=lambda i: f"Iteration {i} · D({i})")
    options = [None, *[n for n in numbers if n != st.session_state[state.IT_KEY]]]
    if st.session_state.get(state.CMP_KEY) not in options:
        st.session_state[state.CMP_KEY] = None
    st.selectbox("Compare with", options, key=state.CMP_KEY,
                 format_func=lambda i: "nothing" if i is None else f"Iteration {i}")


def _step_states(ctx: state.Context) -> dict[str, bool]:
    return resources.loop_state(ctx.root, ctx.iteration, ctx.version)[0]


def render_stepper(ctx: state.Context, pages: dict) -> None:
    states = _step_states(ctx)
    lines = [f"{':material/check_circle:' if done else ':material/radio_button_unchecked:'} {name}"
             for name, done in states.items()]
    st.markdown(f"**Loop, iteration {ctx.iteration}**  \n" + "  \n".join(lines))
    pending = next((name for name, done in states.items() if not done), None)
    action = _next_action(ctx, pending)
    if action:
        page = next((p for word, p in ACTION_PAGES if word in action.lower()), None)
        label = f"Next: {action}" if action != "build" or pending else f"Next: build D({ctx.iteration + 1})"
        if page and page in pages:
            st.page_link(pages[page], label=label, icon=":material/arrow_forward:")
        else:
            st.caption(label)


def _next_action(ctx: state.Context, pending: str | None) -> str | None:
    try:
        cached = resources.loop_state(ctx.root, ctx.iteration, ctx.version)
    except Exception as exc:  # the stepper never breaks a page
        return f"unknown ({exc})"
    return cached[1]


def render_sidebar(pages: dict) -> None:
    with st.sidebar:
        st.markdown("### Middo Studio")
        if signed_in():  # a signed-in user works in the workspace served, and opens no other folder
            current = state.current()
            render_account(current.ws if current else None)
            st.caption(f"Workspace: {st.session_state.get(state.WS_KEY) or 'none'}")
        else:
            render_workspace_picker()
        ctx_root = st.session_state.get(state.WS_KEY)
        if not ctx_root or not st.session_state.get("workspace_ok"):
            return
        try:
            render_iteration_pickers(ctx_root)
            ctx = state.current()
            if ctx is not None:
                render_stepper(ctx, pages)
                render_model_server(ctx)
        except Exception as exc:
            render_error(exc, "Could not read the workspace")

"""Middo Studio: `streamlit run app/streamlit_app.py -- --workspace DIR` (or `middo studio DIR`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import state  # noqa: E402
from app.components import signin  # noqa: E402
from app.components.sidebar import open_workspace_path, render_sidebar  # noqa: E402

st.set_page_config(page_title="Middo Studio", page_icon=":material/autorenew:", layout="wide")
signin.require_sign_in()  # with an identity provider configured, nothing shows before sign-in

if state.WS_KEY not in st.session_state or (signin.signed_in()
                                            and st.session_state[state.WS_KEY] != state.initial_workspace()):
    open_workspace_path(state.initial_workspace())  # signed in: the workspace the Studio serves
ctx = state.current()
signin.require_role(ctx.ws if ctx else None)

PAGES = {
    "data": st.Page("app_pages/data.py", title="Data", icon=":material/table_rows:", default=True),
    "diagnose": st.Page("app_pages/diagnose.py", title="Diagnose", icon=":material/troubleshoot:"),
    "map": st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
    "review": st.Page("app_pages/review.py", title="Review", icon=":material/rate_review:"),
    "iterations": st.Page("app_pages/iterations.py", title="Iterations", icon=":material/timeline:"),
}
nav = st.navigation(list(PAGES.values()))
render_sidebar(PAGES)
nav.run()

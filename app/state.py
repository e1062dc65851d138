"""What every page needs: the open workspace, the current and the compare iteration."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import streamlit as st

from app import resources
from middo_core.workspace import Workspace

WS_KEY = "workspace_path"
IT_KEY = "iteration"
CMP_KEY = "compare_iteration"


def initial_workspace() -> str:
    """The folder given as `streamlit run app/streamlit_app.py -- --workspace DIR` (or MIDDO_WORKSPACE)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.workspace or os.environ.get("MIDDO_WORKSPACE", "")


@dataclass
class Context:
    root: str
    ws: Workspace
    iteration: int
    compare: int | None
    version: int

    def refresh(self) -> Context:
        """The same context with the store version read again (after a write)."""
        version = resources.store_version(self.root)
        return Context(self.root, resources.workspace(self.root, version), self.iteration,
                       self.compare, version)


def current() -> Context | None:
    root = st.session_state.get(WS_KEY) or ""
    if not root or not st.session_state.get("workspace_ok"):
        return None
    version = resources.store_version(root)
    try:
        ws = resources.workspace(root, version)
    except Exception:
        return None
    iteration = st.session_state.get(IT_KEY)
    compare = st.session_state.get(CMP_KEY)
    return Context(root, ws, int(iteration) if iteration is not None else 0,
                   int(compare) if compare is not None else None, version)


def require() -> Context:
    """The context, or an empty state that says what to do, and the page stops. Above every
    page's content: the background runs' banner (which starts iteration 0 on a fresh demo)."""
    ctx = current()
    if ctx is None:
        st.info("No workspace open. Open or create one in the sidebar "
                "(a workspace is a folder holding middo.yaml and middo.duckdb).")
        st.stop()
    from app.components.activity import render_activity  # it imports this module

    render_activity(ctx)
    return ctx

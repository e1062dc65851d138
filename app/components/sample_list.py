"""Opening one sample of a list: the Map page's selection and the Diagnose page's histogram bins.

The sample is shown whole (text verbatim), with its signals, why the current m's flag it, and a
link to its proposals on the Review page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import resources, state
from app.components.review_view import render_sample_text
from middo_core import review
from middo_core.selection import Selection, SignalTable, explain

SIGNALS = ("loss_pre", "loss_post", "diversity", "quality")
REVIEW_FOCUS = "review_focus"  # read by the Review page: the proposal to show first


def pick_sample(labels: dict[str, str], key: str) -> str | None:
    """A picker over sample ids (labelled with their instruction); the id picked, or None."""
    return st.selectbox("Open a sample", list(labels), index=None, key=key,
                        placeholder="Pick a listed sample to read it whole",
                        format_func=lambda i: f"{i} · {str(labels[i])[:80]}")


def render_sample(ctx: state.Context, iteration: int, rec: dict, selection: Selection | None,
                  table: SignalTable | None) -> None:
    """One sample (a row of store.views.sample_signals) whole, in a bordered box."""
    opened = rec["id"]
    with st.container(border=True):
        index = resources.signal_index(ctx.root, iteration, ctx.version) if table is not None else None
        known = index is not None and selection is not None and opened in index  # a hash lookup
        reasons = explain(pd.Series({"sample_id": opened}), selection, table) if known else []
        st.markdown(f"**Sample {opened}** · {rec['origin']} · "
                    + (" · ".join(f"{c} {rec[c]:.3f}" for c in SIGNALS if rec[c] == rec[c]) or "no signals"))
        st.caption("Flagged: " + "; ".join(reasons) if reasons else "Not flagged with the current m's.")
        render_sample_text("Sample", rec)
        render_proposal_links(ctx, iteration, opened)


def render_proposal_links(ctx: state.Context, iteration: int, sample_id: str) -> None:
    """A button per proposal written for the sample, opening it on the Review page."""
    mine = review.source_proposals(ctx.ws, iteration, sample_id)  # not the whole queue: one sample's
    if mine.empty:
        st.caption("No proposal for this sample yet: save a selection on the Diagnose page and refine "
                   "the flagged samples.")
    for prop in mine.to_dict("records"):
        if st.button(f"Review its {prop['axis']} proposal ({prop['status']})", key=f"open_{prop['id']}",
                     icon=":material/rate_review:"):
            st.session_state[REVIEW_FOCUS] = prop["id"]
            st.switch_page("app_pages/review.py")

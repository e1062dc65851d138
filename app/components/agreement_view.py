"""The Iterations page's review agreement: kappa with the counts behind it, and each curator's
counts and speed (middo_core/agreement.py computes them)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import resources
from app.components.common import COUNT, dashes, fmt_num


def _kappa(value: float | None) -> str:
    return "undefined (every decision in one category)" if value is None else fmt_num(value)


def render_agreement(ctx) -> None:
    """Shown once an iteration's proposals have two curators' decisions, or overlap is set."""
    it = ctx.iteration
    found = resources.agreement(ctx.root, it, ctx.version)
    if len(found.curators) < 2 and ctx.ws.config.review.overlap < 2:
        return
    st.markdown(f"**Agreement between curators on the proposals of D({it})** (accept or edit "
                "against reject)")
    if not found.items:
        st.caption(f"No proposal of D({it}) has {found.raters} curators' decisions yet: the "
                   "agreement appears once it does.")
    else:
        per = ", ".join(f"{n:,} {c}" for c, n in found.per_category.items())
        st.markdown(f"Fleiss' kappa **{_kappa(found.fleiss)}** on {found.items:,} proposals × "
                    f"{found.raters} curators each ({per} decisions; a proposal's first "
                    f"{found.raters} decisions count)")
    left, right = st.columns(2)
    with left:
        if len(found.pairs):
            pairs = found.pairs.assign(cohen=[_kappa(None if pd.isna(k) else k)
                                              for k in found.pairs["cohen"]])
            st.caption("Cohen's kappa for each pair of curators, on the proposals both decided")
            st.dataframe(dashes(pairs.rename(columns={"curator_a": "curator", "curator_b": "and",
                                                      "items": "proposals", "cohen": "Cohen's kappa"}),
                                {"proposals": COUNT}), hide_index=True, width="stretch")
    with right:
        if len(found.curators):
            st.caption("Each curator: standing decisions, share matching the outcome, speed "
                       "(a bulk action counts each proposal at one instant)")
            table = found.curators.assign(with_outcome=100 * pd.to_numeric(found.curators["with_outcome"]))
            st.dataframe(dashes(table.rename(columns={
                "with_outcome": "with the outcome (%)", "decisions_per_hour": "decisions per hour",
                "median_s_between": "median s between"}), {
                "accepted": COUNT, "edited": COUNT, "rejected": COUNT, "with the outcome (%)": "{:.0f}",
                "decisions per hour": "{:,.0f}", "median s between": "{:,.1f}"}),
                hide_index=True, width="stretch")

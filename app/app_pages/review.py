"""Review: decide each proposal (accept / edit / reject), one at a time or in a table, or in bulk."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import resources, state
from app.components.common import fmt_optional, render_error
from app.components.jobs import render_job_panel, start_job_button
from app.components.review_view import render_diff, render_sample_text, render_shortcuts
from app.components.signin import denied, who
from middo_core import review
from middo_core.overlap import ACCEPTING, is_owner, rule, standing
from middo_core.selection import explain

ACTOR = who()  # the signed-in identity, or the local name on loopback without sign-in
AXES = ("any", "complexity", "diversity", "quality")
STATUSES = ("pending", "any", "accepted", "edited", "rejected", "failed")

ctx = state.require()
it = ctx.iteration
st.title(f"Review proposals for D({it})")
POS = f"review_pos_{it}"
OVERLAP = ctx.ws.config.review.overlap  # curators per proposal (middo_core/overlap.py)
if OVERLAP > 1 and isinstance(ACTOR, str):  # no sign-in: each curator says who they are
    ACTOR = st.text_input("Curator", key="review_curator", placeholder="your name",
                          help="Each proposal is decided by several curators: your decisions are "
                               "recorded under this name, and the queue shows what you still owe.").strip()
    if not ACTOR:
        st.info(f"Each proposal here is decided by {OVERLAP} curators. Type your name to see the "
                "proposals you still owe.")
        st.stop()
CURATOR = ACTOR if isinstance(ACTOR, str) else ACTOR.actor  # the name the audit trail records
OWED_BY = CURATOR if OVERLAP > 1 else None
REFUSED = denied(ctx.ws, "decide")  # buttons are disabled and say why; the library refuses anyway
if REFUSED:
    st.info(REFUSED, icon=":material/lock:")

counts = resources.review_counts(ctx.root, it, ctx.version)
total = sum(n for by_status in counts.values() for s, n in by_status.items() if s != "failed")
decided = sum(n for by_status in counts.values() for s, n in by_status.items()
              if s in ("accepted", "edited", "rejected"))
if total == 0 and not counts:
    st.info(f"No proposals for iteration {it} yet. Save a selection on the Diagnose page and "
            "refine the flagged samples; the proposals appear here.")
    st.stop()
st.progress(decided / total if total else 1.0, text=f"{decided:,} of {total:,} decided")
st.caption(" · ".join(f"{axis}: " + ", ".join(f"{n:,} {s}" for s, n in sorted(by.items()))
                      for axis, by in sorted(counts.items())))
if OWED_BY:
    owe = len(resources.review_ids(ctx.root, it, None, "pending", ctx.version, OWED_BY))
    st.markdown(f"**{CURATOR}, you still owe {owe:,} proposal(s).** The rest wait for other "
                "curators or are decided.")
    st.caption(rule(ctx.ws))

failed_total = sum(by.get("failed", 0) for by in counts.values())
if failed_total:
    with st.expander(f"{failed_total:,} proposal(s) failed: why, and asking again", expanded=False):
        reasons = resources.failure_reasons(ctx.root, it, ctx.version)
        st.dataframe(pd.DataFrame({"reason": [r or "-" for r in reasons], "proposals": list(reasons.values())}),
                     hide_index=True, width="stretch", height=min(36 * (len(reasons) + 1) + 4, 320))
        if any("token limit" in (r or "") for r in reasons):
            st.caption("Answers cut at the token limit: raise refine.max_new_tokens in middo.yaml "
                       "(or set refine.keep_truncated to keep them), then ask again.")
        if not render_job_panel(ctx, ("refine",), key="retry_job"):
            start_job_button(ctx, "refine", "Ask again for the failed ones", args={"retry_failed": True},
                             key="retry_failed",
                             help="One more LLM call per failed proposal; the stored selection decides which samples")

FOCUS = "review_focus"  # a proposal to show first (set by the Map page's "Review its proposal")
focus = st.session_state.pop(FOCUS, None)
if focus is not None:  # show every axis and status, so the proposal is in the queue
    st.session_state["review_axis"], st.session_state["review_status"] = "any", "any"
    st.session_state["review_mode"] = "One at a time"
c1, c2, c3 = st.columns([1, 1, 2])
axis = c1.selectbox("Axis", AXES, key="review_axis")
status = c2.selectbox("Status", STATUSES, key="review_status")
mode = c3.segmented_control("Mode", ["One at a time", "Table"], default="One at a time",
                            key="review_mode")
axis_filter = None if axis == "any" else axis
status_filter = None if status == "any" else status
# the queue's ids only: texts are read for the proposal shown (or the table's page), not all of them
QUEUE_OWED = OWED_BY if status_filter == "pending" else None  # 'pending': what this curator owes
queue_ids = resources.review_ids(ctx.root, it, axis_filter, status_filter, ctx.version, QUEUE_OWED)
if focus is not None and focus in queue_ids:
    st.session_state[POS] = queue_ids.index(focus)
TABLE_ROWS = 500


def decide(action: str, proposal_id: str, seen: str | None = None, **fields) -> None:
    """Record a decision. `seen` is the status the page showed: a click that reaches the server
    after the page moved on (a stale button under load) must not overturn a newer decision."""
    if seen is not None:
        now = resources.proposal_status(ctx.root, proposal_id) or seen
        if now != seen:
            st.session_state["review_error"] = (f"Proposal {proposal_id} is already {now}: nothing "
                                                "changed. Decide it again if you meant to.")
            return
    try:
        if action == "accept":
            review.accept(ctx.ws, proposal_id, actor=ACTOR)
        elif action == "reject":
            review.reject(ctx.ws, proposal_id, actor=ACTOR)
        else:
            review.edit(ctx.ws, proposal_id, actor=ACTOR, **fields)
    except Exception as exc:
        st.session_state["review_error"] = str(exc)
        return
    st.session_state.pop("review_edit_id", None)
    if status != "pending":  # a decided proposal leaves a 'pending' queue by itself
        st.session_state[POS] = st.session_state.get(POS, 0) + 1


VERDICT_LABELS = {"real": "Real problem", "false_alarm": "False alarm"}


def set_verdict(proposal_id: str, key: str) -> None:
    """The curator's verdict on the flag behind a proposal (None: withdrawn)."""
    chosen = st.session_state.get(key)
    verdict = next((v for v, label in VERDICT_LABELS.items() if label == chosen), "cleared")
    try:
        review.mark(ctx.ws, it, proposal_id, verdict, actor=ACTOR)
    except Exception as exc:
        st.session_state["review_error"] = str(exc)


def render_verdict(row: dict) -> None:
    marked = resources.verdicts(ctx.root, it, ctx.version)
    mine = marked[(marked["sample_id"] == row["source_id"]) & (marked["axis"] == row["axis"])]
    current = VERDICT_LABELS.get(mine["verdict"].iloc[0]) if len(mine) else None
    key = f"verdict_{row['id']}_{current}"  # a new key when the stored verdict changes
    refused = denied(ctx.ws, "verdict")
    st.segmented_control(
        f"Was the {row['axis']} flag right?", list(VERDICT_LABELS.values()), default=current,
        key=key, on_change=set_verdict, args=(row["id"], key), disabled=bool(refused),
        help="Apart from accepting or rejecting the proposal: is the original sample really a "
             f"{row['axis']} problem? The Diagnose page shows each axis's precision against these "
             "verdicts and the m they suggest.")


def render_overlap(proposal_id: str) -> None:
    """How far the proposal's curators have got; what they decided is not shown, so that each
    curator decides on their own, except for a tie, which the owners are asked to break."""
    votes = standing(ctx.ws, proposal_id)
    if len(votes) < OVERLAP:
        st.caption(f"{len(votes)} of {OVERLAP} curators have decided this proposal.")
        return
    yes = int(votes["decision"].isin(ACCEPTING).sum())
    st.warning(f"A tie: {yes} accept and {len(votes) - yes} reject. "
               + ("As an owner, your decision breaks it." if is_owner(ctx.ws, CURATOR)
                  else "It waits for an owner's decision."))


def move(step: int) -> None:
    st.session_state[POS] = max(0, st.session_state.get(POS, 0) + step)
    st.session_state.pop("review_edit_id", None)


def reasons_for(source_id: str) -> list[str]:
    try:
        data = resources.signals(ctx.root, it, ctx.version)
    except Exception:  # no signal store in this build: the proposal is still reviewable
        return []
    record = next((r for r in resources.status(ctx.root, ctx.version)["iterations"] if r["number"] == it), {})
    index = resources.signal_index(ctx.root, it, ctx.version)
    if data is None or record.get("m_complexity") is None or index is None or source_id not in index:
        return []
    table = data[1]
    selection = table.select(record["m_complexity"], record["m_diversity"], record["m_quality"])
    return explain(pd.Series({"sample_id": source_id}), selection, table)


def render_bulk() -> None:
    n = len(resources.review_ids(ctx.root, it, axis_filter, "pending", ctx.version, OWED_BY))
    scope = f"for {axis_filter}" if axis_filter else "on every axis"
    if OWED_BY:
        scope = f"you still owe {scope}"
    if n == 0 or REFUSED:
        return
    if not st.session_state.get("bulk_confirm"):
        if st.button(f"Accept all {n:,} pending proposals {scope}…", key="bulk_accept"):
            st.session_state["bulk_confirm"] = (axis_filter, n)
            st.rerun()
        return
    bulk_axis, bulk_n = st.session_state["bulk_confirm"]
    st.warning(f"Accept {bulk_n:,} pending proposals {scope}? Failed ones are never accepted.")
    y, no = st.columns(2)
    if y.button(f"Yes, accept {bulk_n:,}", type="primary", key="bulk_yes"):
        done = review.bulk_decide(ctx.ws, it, "accept", axis=bulk_axis, actor=ACTOR)
        st.session_state.pop("bulk_confirm")
        st.toast(f"Accepted {done:,} proposals")
        st.rerun()
    if no.button("Cancel", key="bulk_no"):
        st.session_state.pop("bulk_confirm")
        st.rerun()


def render_one() -> None:
    if not queue_ids:
        st.success(("Nothing left that you owe." if OWED_BY else "Nothing left in this queue.")
                   if status == "pending" else "No proposal matches.")
        return
    pos = min(st.session_state.get(POS, 0), len(queue_ids) - 1)
    st.session_state[POS] = pos
    row = review.review_queue(ctx.ws, it, axis=axis_filter, status=status_filter, limit=1,
                              offset=pos, owed_by=QUEUE_OWED).iloc[0].to_dict()
    pid = row["id"]
    st.markdown(f"#### Proposal {pos + 1:,} of {len(queue_ids):,} · {row['axis']} · {row['status']}")
    if error := st.session_state.pop("review_error", None):
        st.error(error)
    for reason in reasons_for(row["source_id"]):
        st.caption(f"Flagged: {reason}")
    if OWED_BY and row["status"] == "pending":
        render_overlap(pid)
    render_verdict(row)
    if row["status"] == "failed":
        st.error("This proposal failed: the LLM's answer could not be used.")
        if row.get("reason"):
            st.text(str(row["reason"]))
    original = {"instruction": row["source_instruction"], "input": row["source_input"],
                "output": row["source_output"]}
    shown = {f: row[f"edited_{f}"] if row["status"] == "edited" else row[f]
             for f in ("instruction", "input", "output")}
    if row["axis"] == "diversity":
        render_diff(original, shown, diff=False)
        ids = json.loads(row.get("neighbour_ids") or "[]")
        if ids:
            with st.expander(f"Written from the sparse sample and its {len(ids)} neighbours"):
                neighbours = resources.sample_signals(ctx.root, it, tuple(ids), ctx.version)
                for i, nb in enumerate(neighbours.to_dict("records"), start=1):
                    render_sample_text(f"Neighbour {i}", nb)
    else:
        render_diff(original, shown)
    valid = row["status"] != "failed" and not REFUSED
    b = st.columns(5)
    b[0].button("Accept (a)", key="review_accept", type="primary", disabled=not valid,
                on_click=decide, args=("accept", pid, row["status"]), width="stretch")
    if b[1].button("Edit (e)", key="review_edit", disabled=not valid, width="stretch"):
        st.session_state["review_edit_id"] = pid
    b[2].button("Reject (r)", key="review_reject", disabled=not valid, on_click=decide,
                args=("reject", pid, row["status"]), width="stretch")
    b[3].button("Previous (k)", key="review_prev", on_click=move, args=(-1,), disabled=pos == 0,
                width="stretch")
    b[4].button("Next (j)", key="review_next", on_click=move, args=(1,),
                disabled=pos >= len(queue_ids) - 1, width="stretch")
    if st.session_state.get("review_edit_id") == pid:
        with st.form(f"edit_{pid}"):
            ins = st.text_area("Instruction", value=shown["instruction"] or "", height=120)
            inp = st.text_area("Input", value=shown["input"] or "", height=80)
            out = st.text_area("Output", value=shown["output"] or "", height=200)
            if st.form_submit_button("Save edit", type="primary"):
                decide("edit", pid, instruction=ins, input=inp, output=out)
                st.rerun()
    render_shortcuts()


def render_table() -> None:
    if not queue_ids:
        st.info("No proposal matches.")
        return
    pages = -(-len(queue_ids) // TABLE_ROWS)
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages:,}, {TABLE_ROWS} proposals each)", min_value=1,
                                   max_value=pages, step=1, key=f"review_table_page_{it}"))
    queue = review.review_queue(ctx.ws, it, axis=axis_filter, status=status_filter,
                                limit=TABLE_ROWS, offset=(page - 1) * TABLE_ROWS, owed_by=QUEUE_OWED)
    view = pd.DataFrame({
        "id": queue["id"], "axis": queue["axis"], "status": queue["status"],
        "decision": queue["status"].map({"accepted": "accept", "edited": "accept",
                                         "rejected": "reject"}).fillna("—"),
        "original": queue["source_instruction"], "proposal": queue["instruction"],
        "quality": [fmt_optional(q) for q in queue["quality"]],  # a dash, not 'None', when undiagnosed
    })
    edited = st.data_editor(
        view, hide_index=True, width="stretch", height=480, key=f"review_table_{it}_{page}",
        disabled=["id", "axis", "status", "original", "proposal", "quality"],
        column_config={"decision": st.column_config.SelectboxColumn(options=["—", "accept", "reject"]),
                       "original": st.column_config.TextColumn(width="large"),
                       "proposal": st.column_config.TextColumn(width="large")})
    changed = edited[edited["decision"] != view["decision"]]
    if st.button(f"Save {len(changed):,} decision(s)", type="primary", disabled=changed.empty or bool(REFUSED)):
        failed = 0
        for rec in changed.to_dict("records"):
            try:
                if rec["decision"] == "accept":
                    review.accept(ctx.ws, rec["id"], actor=ACTOR)
                elif rec["decision"] == "reject":
                    review.reject(ctx.ws, rec["id"], actor=ACTOR)
            except Exception as exc:
                failed += 1
                render_error(exc, f"Proposal {rec['id']}")
        if not failed:
            st.rerun()


try:
    render_bulk()
    if mode == "Table":
        render_table()
    else:
        render_one()
except Exception as exc:
    render_error(exc, "Could not show the review queue")

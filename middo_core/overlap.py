"""Review overlap: each proposal decided by N curators, and the rule that makes their decisions
its outcome.

With `review.overlap: N` in middo.yaml, a proposal stays pending until N curators have decided it.
Then the majority holds: accept (an edit counts as an accept) against reject. A tie is broken by
the owners among its curators (the majority of their decisions); while no owner has decided it,
or the owners tie too, it stays pending and is owed to every owner who has not decided it. A
curator's new decision replaces their last one and the outcome is worked out again. An accepted
outcome carries the latest edit among the accepting decisions, if there is one.

With overlap 1 (the default) a decision is the outcome, replacing any earlier one, as a single
curator expects. A policy's decision (`middo loop --review auto`) is the outcome by itself too:
a policy is not a curator.

Only a resolved outcome (accepted or edited) enters the next dataset version: proposals.status
is the outcome, and the build reads nothing else.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from middo_core.access import Identity, role_of
from middo_core.store import decisions as d
from middo_core.store import review as q
from middo_core.workspace import Workspace

POLICY = "policy:"  # the actor prefix of a headless policy's decisions
ACCEPTING = ("accepted", "edited")


def overlap(ws: Workspace) -> int:
    """How many curators decide each proposal."""
    return ws.config.review.overlap


def is_owner(ws: Workspace, actor: str) -> bool:
    """Whether `actor`'s decision breaks a tie: named in review.owners, or a signed-in identity
    (recorded by e-mail address or subject) that the access roles in middo.yaml make an owner.
    A typed name is a curator here unless review.owners names it."""
    if actor in ws.config.review.owners:
        return True
    if actor.startswith(POLICY) or not ws.config.access.roles:
        return False
    who = Identity(subject=actor, email=actor if "@" in actor else None)
    return role_of(ws.config.access, who) == "owner"


def rule(ws: Workspace) -> str:
    """The rule in words, as the Review page and `middo review` state it."""
    n = overlap(ws)
    if n == 1:
        return "Each proposal is decided by one curator: a decision is its outcome."
    named = ", ".join(sorted(ws.config.review.owners)
                      + [k for k, r in sorted(ws.config.access.roles.items()) if r == "owner"])
    named = named or "none set (review.owners in middo.yaml)"
    return (f"Each proposal is decided by {n} curators. Its outcome is the majority of their "
            "decisions (an edit counts as an accept). A tie is broken by the owners' decisions "
            f"(owners: {named}); until an owner decides it, it stays pending.")


def outcomes(votes: pd.DataFrame, ids: list[str], n: int, owner_set: set[str]) -> pd.DataFrame:
    """Each proposal's outcome (store.review.OUTCOME_COLUMNS) from its standing decisions
    (store.decisions.VOTE_COLUMNS, oldest first) under the rule above; `owner_set` holds the
    owners among their actors. Column-wise: a bulk decision resolves 50,000 proposals at once."""
    v = votes.reset_index(drop=True)
    policy = v["actor"].str.startswith(POLICY)
    if policy.any():  # where a policy decided, its latest decision is all that counts
        last_policy = v[policy].groupby("proposal_id").tail(1).index
        decided_by_policy = v["proposal_id"].isin(v.loc[last_policy, "proposal_id"])
        v = v[~decided_by_policy | v.index.isin(last_policy)]
        policy = policy[v.index]
    accept = v["decision"].isin(ACCEPTING)
    owner = v["actor"].isin(owner_set)
    tally = pd.DataFrame({"proposal_id": v["proposal_id"], "n": 1, "yes": accept, "no": ~accept,
                          "owner_yes": accept & owner, "owner_no": ~accept & owner, "policy": policy})
    t = tally.groupby("proposal_id").sum().reindex(ids, fill_value=0)
    tie = t["yes"] == t["no"]  # a tie: the owners' decisions among them decide
    yes = t["yes"].where(~tie, t["owner_yes"])
    no = t["no"].where(~tie, t["owner_no"])
    resolved = (t["policy"] > 0) | (t["n"] >= n)
    status = pd.Series("pending", index=t.index, dtype=object)
    status[resolved & (yes > no)] = "accepted"
    status[resolved & (yes < no)] = "rejected"
    out = pd.DataFrame({"id": ids, "status": status.to_numpy()})
    edits = v[v["decision"] == "edited"].groupby("proposal_id").tail(1).set_index("proposal_id")
    text_cols = ["edited_instruction", "edited_input", "edited_output"]
    for col in text_cols:
        out[col] = out["id"].map(edits[col]) if len(edits) else None
    carries = (out["status"] == "accepted") & out["id"].isin(edits.index)
    out.loc[carries, "status"] = "edited"  # an accepted outcome carries the latest edit
    out.loc[out["status"] != "edited", text_cols] = None
    return out[q.OUTCOME_COLUMNS]


def decide(ws: Workspace, con: duckdb.DuckDBPyConnection, proposal_ids: list[str], status: str,
           actor: str, note: str | None = None, edited: tuple[str, str, str] | None = None) -> int:
    """Record `actor`'s decision (accepted, edited, rejected; pending resets the proposals) on
    each proposal that is not failed, log it in the audit trail, and write the outcomes.
    Returns how many proposals it decided."""
    ids = q.decidable(con, proposal_ids)
    if not ids:
        return 0
    alone = overlap(ws) == 1 or actor.startswith(POLICY)
    if status == "pending":
        d.clear_decisions(con, ids)
    else:
        d.record_decisions(con, ids, status, actor, note, edited, alone)
    if alone or status == "pending":
        text = edited if edited is not None else (None, None, None)
        result = pd.DataFrame({"id": ids, "status": status, "edited_instruction": text[0],
                               "edited_input": text[1], "edited_output": text[2]})
    else:
        votes = d.votes(con, ids)
        owner_set = {a for a in votes["actor"].unique() if is_owner(ws, a)}
        result = outcomes(votes, ids, overlap(ws), owner_set)
    q.set_outcomes(con, result, actor, note)
    q.log_decisions(con, ids, status, actor, note)
    return len(ids)


def standing(ws: Workspace, proposal_id: str) -> pd.DataFrame:
    """The curators' standing decisions on one proposal (store.decisions.VOTE_COLUMNS), oldest first."""
    with ws.store.read() as con:
        return d.votes(con, [proposal_id])


def owed(ws: Workspace, actor: str) -> q.Owed:
    """The queue filter for the proposals `actor` still owes (a policy: every pending one)."""
    return None if actor.startswith(POLICY) else (actor, is_owner(ws, actor), overlap(ws))

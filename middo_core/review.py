"""Curator decisions on refinement proposals: accept, edit, reject, in bulk, or by a policy.

Every decision is saved the moment it is made, with who made it, in the audit trail.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import BaseModel

from middo_core.access import Actor, check
from middo_core.overlap import decide, overlap, owed
from middo_core.registry import Registry
from middo_core.store import review as q
from middo_core.workspace import Workspace


class ReviewError(ValueError):
    pass


def review_queue(ws: Workspace, iteration: int, axis: str | None = None, status: str | None = None,
                 min_quality: float | None = None, max_quality: float | None = None,
                 limit: int | None = None, offset: int = 0,
                 owed_by: str | None = None) -> pd.DataFrame:
    """The proposals matching the filter with their texts, oldest first (`limit` from `offset`);
    with `owed_by`, only those that curator still owes (middo_core/overlap.py)."""
    owing = owed(ws, owed_by) if owed_by else None
    with ws.store.read() as con:
        return q.queue(con, iteration, axis, status, min_quality, max_quality, limit, offset, owing)


def review_queue_ids(ws: Workspace, iteration: int, axis: str | None = None,
                     status: str | None = None, owed_by: str | None = None) -> list[str]:
    """The ids of review_queue()'s rows, in its order (no texts read)."""
    owing = owed(ws, owed_by) if owed_by else None
    with ws.store.read() as con:
        return q.queue_ids(con, iteration, axis, status, owed=owing)


def source_proposals(ws: Workspace, iteration: int, sample_id: str) -> pd.DataFrame:
    """The proposals written for one sample: id, axis, status."""
    with ws.store.read() as con:
        return q.source_proposals(con, iteration, sample_id)


def _decide_one(ws: Workspace, proposal_id: str, status: str, actor: Actor, note: str | None = None,
                edited: tuple[str, str, str] | None = None) -> None:
    actor = check(ws, actor, "decide")
    with ws.store.write() as con:
        current = q.proposal_status(con, proposal_id)
        if current is None:
            raise ReviewError(f"no proposal {proposal_id}")
        if current == "failed":
            raise ReviewError(f"proposal {proposal_id} failed to parse; retry the refinement instead")
        decide(ws, con, [proposal_id], status, actor, note, edited)


def accept(ws: Workspace, proposal_id: str, actor: Actor = "cli", note: str | None = None) -> None:
    _decide_one(ws, proposal_id, "accepted", actor, note)


def reject(ws: Workspace, proposal_id: str, actor: Actor = "cli", note: str | None = None) -> None:
    _decide_one(ws, proposal_id, "rejected", actor, note)


def edit(ws: Workspace, proposal_id: str, instruction: str, input: str, output: str,
         actor: Actor = "cli", note: str | None = None) -> None:
    """The curator's text becomes the sample (origin 'edited'); the LLM's proposal is kept."""
    if not instruction.strip() or not output.strip():
        raise ReviewError("an edited sample needs a non-empty instruction and output")
    _decide_one(ws, proposal_id, "edited", actor, note, (instruction, input, output))


def bulk_decide(ws: Workspace, iteration: int, action: str, axis: str | None = None,
                status: str = "pending", min_quality: float | None = None,
                max_quality: float | None = None, actor: Actor = "cli",
                note: str | None = None) -> int:
    """Accept or reject every proposal matching the filter (failed ones are never accepted).
    Under review overlap, 'pending' means the pending proposals this actor still owes."""
    target = {"accept": "accepted", "reject": "rejected", "reset": "pending"}.get(action)
    if target is None:
        raise ReviewError(f"unknown bulk action {action!r} (accept, reject, reset)")
    actor = check(ws, actor, "decide")
    with ws.store.write() as con:
        owing = owed(ws, actor) if status == "pending" and target != "pending" and overlap(ws) > 1 else None
        matching = q.queue_ids(con, iteration, axis, status, min_quality, max_quality, owing)
        return decide(ws, con, matching, target, actor, note)


def review_counts(ws: Workspace, iteration: int) -> dict[str, dict[str, int]]:
    with ws.store.read() as con:
        return q.review_counts(con, iteration)


def mark(ws: Workspace, iteration: int, target: str, verdict: str, axis: str | None = None,
         actor: Actor = "cli", note: str | None = None) -> tuple[str, str]:
    """A curator's verdict on a flag, apart from any decision on its proposal: "real" (a real
    problem), "false_alarm", or "cleared" (withdraws the last one). `target` is a proposal id
    (its source sample and axis) or a sample id of D(iteration) (then `axis` names the flag,
    unless the stored selection flags it on one axis only). Returns (sample id, axis)."""
    from middo_core.selection import AXES, flagged_sets
    from middo_core.store.canaries import VERDICTS, add_verdict

    actor = check(ws, actor, "verdict")
    if verdict not in (*VERDICTS, "cleared"):
        raise ReviewError(f"unknown verdict {verdict!r}: use real, false_alarm or cleared")
    if axis is not None and axis not in AXES:
        raise ReviewError(f"unknown axis {axis!r}: use {', '.join(AXES)}")
    with ws.store.read() as con:
        row = con.execute("SELECT source_id, axis FROM proposals WHERE id = ? AND iteration = ?",
                          [target, iteration]).fetchall()
        in_version = not row and bool(con.execute(
            "SELECT 1 FROM dataset_members WHERE iteration = ? AND sample_id = ? AND split = 'train'",
            [iteration, target]).fetchall())
    if row:
        sample_id, axis = row[0][0], axis or row[0][1]
    elif in_version:
        sample_id = target
        if axis is None:
            on = [a for a, ids in flagged_sets(ws, iteration).items() if target in set(ids)]
            if len(on) != 1:
                raise ReviewError(f"sample {target} is flagged on {', '.join(on) or 'no axis'} in "
                                  f"D({iteration}): say which flag the verdict is about (--axis)")
            axis = on[0]
    else:
        raise ReviewError(f"{target}: neither a proposal of iteration {iteration} nor a sample "
                          f"of D({iteration})")
    with ws.store.write() as con:
        add_verdict(con, iteration, sample_id, axis, verdict, actor, note)
    return sample_id, axis


def verdicts(ws: Workspace, iteration: int | None = None) -> pd.DataFrame:
    """The standing verdicts (the latest per sample and axis) of one iteration, or of all."""
    from middo_core.store.canaries import current_verdicts

    with ws.store.read() as con:
        return current_verdicts(con, iteration)


def audit_trail(ws: Workspace, proposal_id: str | None = None) -> pd.DataFrame:
    with ws.store.read() as con:
        return q.audit_trail(con, proposal_id)


# --- policies for headless runs ---------------------------------------------------------------

class ReviewPolicy(BaseModel):
    name: ClassVar[str]

    def apply(self, ws: Workspace, iteration: int) -> int:
        raise NotImplementedError


policies: Registry[ReviewPolicy] = Registry("review policy")


@policies.register
class AcceptValid(ReviewPolicy):
    """Accept every proposal that parsed and validated (the paper's setting: no human in the loop)."""

    name: ClassVar[str] = "auto"
    axes: list[str] | None = None  # None: every axis

    def apply(self, ws: Workspace, iteration: int) -> int:
        axes = self.axes or [None]
        return sum(bulk_decide(ws, iteration, "accept", axis=a, actor=f"policy:{self.name}")
                   for a in axes)


@policies.register
class QualityGate(ReviewPolicy):
    """Accept pending proposals whose source scored at most `max_quality`; reject the rest."""

    name: ClassVar[str] = "quality-gate"
    max_quality: float = 10.0

    def apply(self, ws: Workspace, iteration: int) -> int:
        actor = f"policy:{self.name}"
        n = bulk_decide(ws, iteration, "accept", max_quality=self.max_quality, actor=actor)
        bulk_decide(ws, iteration, "reject", actor=actor)
        return n


def apply_policy(ws: Workspace, iteration: int, name: str = "auto", **params) -> int:
    return policies.get(name)(**params).apply(ws, iteration)

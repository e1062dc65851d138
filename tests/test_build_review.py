"""Review decisions and the dataset-version arithmetic, on a real DuckDB workspace."""

from __future__ import annotations

import json

import pytest

from middo_core.build import BuildError, build_next, lineage
from middo_core.review import (
    ReviewError,
    accept,
    apply_policy,
    audit_trail,
    bulk_decide,
    edit,
    reject,
    review_counts,
    review_queue,
)
from middo_core.sample import Sample
from middo_core.store.samples import add_members, dataset, insert_samples, samples_frame


def seed(ws, n: int = 10) -> list[Sample]:
    samples = [Sample(instruction=f"What is {i} plus {i}?", output=str(2 * i)) for i in range(n)]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])
    return samples


def propose(ws, iteration: int, axis: str, source: Sample, text: str, status: str = "pending",
            reason: str | None = None) -> str:
    pid = f"{axis}-{source.id}"
    with ws.store.write() as con:
        con.execute(
            """INSERT INTO proposals (id, iteration, axis, source_id, instruction, input, output, status, reason)
               VALUES (?, ?, ?, ?, ?, '', ?, ?, ?)""",
            [pid, iteration, axis, source.id, text, f"answer to {text}", status, reason],
        )
    return pid


def test_version_size_follows_the_rule(workspace_factory):
    ws = workspace_factory()
    s = seed(ws, 10)
    hard = propose(ws, 0, "complexity", s[0], "Simpler question 0")
    low = propose(ws, 0, "quality", s[1], "Better question 1")
    aug1 = propose(ws, 0, "diversity", s[2], "A new question near 2")
    aug2 = propose(ws, 0, "diversity", s[3], "A new question near 3")
    rejected = propose(ws, 0, "quality", s[4], "Rejected rewrite of 4")
    propose(ws, 0, "complexity", s[5], "never decided")  # pending: original stays
    propose(ws, 0, "quality", s[6], "", status="failed", reason="empty output")
    for pid in (hard, low, aug1):
        accept(ws, pid, actor="alice")
    edit(ws, aug2, "Edited new question", "", "Edited answer", actor="alice")
    reject(ws, rejected, actor="alice", note="changes the meaning")

    report = build_next(ws, 0)
    # 10 - 2 replaced + 2 rewrites + 2 new near sparse samples (sparse originals stay)
    assert report.size_after == 12 == 10 - 2 + 2 + 2
    assert report.removed == 2
    assert report.added == {"simplified": 1, "improved": 1, "augmented": 1, "edited": 1}
    with ws.store.read() as con:
        d1 = dataset(con, 1)
    ids = set(d1["id"])
    assert s[0].id not in ids and s[1].id not in ids
    assert {s[2].id, s[3].id, s[4].id, s[5].id, s[6].id} <= ids
    edited = d1[d1.origin == "edited"].iloc[0]
    assert edited.instruction == "Edited new question" and edited.parent_id == s[3].id
    assert d1["instruction"].notna().all() and d1["output"].notna().all()


def test_rebuild_is_refused_and_lineage_is_traced(workspace_factory):
    ws = workspace_factory()
    s = seed(ws, 4)
    pid = propose(ws, 0, "complexity", s[0], "Simpler")
    accept(ws, pid)
    build_next(ws, 0)
    with pytest.raises(BuildError):
        build_next(ws, 0)
    with ws.store.read() as con:
        child = dataset(con, 1).query("origin == 'simplified'").iloc[0]
    chain = lineage(ws, child.id)
    assert [c["id"] for c in chain] == [child.id, s[0].id]
    assert chain[0]["versions"] == [1] and chain[1]["versions"] == [0]
    assert chain[0]["axis"] == "complexity"


def test_duplicates_are_added_once(workspace_factory):
    ws = workspace_factory()
    s = seed(ws, 4)
    a = propose(ws, 0, "diversity", s[0], "Same new question")
    b = propose(ws, 0, "diversity", s[1], "Same new question")
    bulk_decide(ws, 0, "accept", axis="diversity")
    assert {a, b} <= set(review_queue(ws, 0, status="accepted")["id"])
    report = build_next(ws, 0)
    assert report.duplicates == 1 and report.size_after == 5


def test_failed_proposals_cannot_be_accepted_and_decisions_are_audited(workspace_factory):
    ws = workspace_factory()
    s = seed(ws, 3)
    failed = propose(ws, 0, "quality", s[0], "", status="failed", reason="missing marker")
    ok = propose(ws, 0, "quality", s[1], "Good rewrite")
    with pytest.raises(ReviewError, match="failed"):
        accept(ws, failed)
    assert bulk_decide(ws, 0, "accept") == 1  # the failed one is skipped
    assert review_counts(ws, 0)["quality"] == {"accepted": 1, "failed": 1}
    trail = audit_trail(ws, ok)
    assert trail.iloc[0]["action"] == "accepted" and trail.iloc[0]["actor"] == "cli"
    with pytest.raises(ReviewError):
        edit(ws, ok, "", "", "x")


def test_auto_policy_accepts_every_valid_proposal(workspace_factory):
    ws = workspace_factory()
    s = seed(ws, 5)
    for i in range(3):
        propose(ws, 0, "quality", s[i], f"rewrite {i}")
    propose(ws, 0, "quality", s[3], "", status="failed", reason="refusal")
    assert apply_policy(ws, 0, "auto") == 3
    trail = audit_trail(ws)
    assert set(trail["actor"]) == {"policy:auto"}
    q = review_queue(ws, 0)
    assert json.loads(q.iloc[0]["neighbour_ids"]) == []


def test_a_sample_flagged_on_two_axes_with_both_rewrites_accepted(workspace_factory):
    ws = workspace_factory()
    s = seed(ws, 4)
    accept(ws, propose(ws, 0, "complexity", s[0], "Simpler"))
    accept(ws, propose(ws, 0, "quality", s[0], "Clearer"))
    report = build_next(ws, 0)
    assert report.removed == 1 and sum(report.added.values()) == 2 and report.size_after == 5

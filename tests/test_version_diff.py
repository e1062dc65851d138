"""Comparing dataset versions: removed, added and rewritten samples on a real DuckDB workspace,
with D(1) built from proposals a curator decided."""

from __future__ import annotations

import csv
import json

import pytest

from middo_core.build import build_next
from middo_core.review import accept, edit, reject
from middo_core.sample import Sample
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import add_members, insert_samples, samples_frame
from middo_core.version_diff import (
    EXPORT_COLUMNS,
    VersionDiffError,
    diff_page,
    diff_summary,
    export_diff,
    versions,
)


def seed(ws, n: int) -> list[Sample]:
    samples = [Sample(instruction=f"What is {i} plus {i}?", output=f"It is {2 * i}.") for i in range(n)]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])
    return samples


def propose(ws, iteration: int, axis: str, source: Sample, instruction: str,
            output: str = "A new answer.") -> str:
    pid = f"{iteration}-{axis}-{source.id}"
    with ws.store.write() as con:
        put_proposals(con, [{"id": pid, "iteration": iteration, "axis": axis, "source_id": source.id,
                             "instruction": instruction, "input": "", "output": output,
                             "status": "pending"}])
    return pid


@pytest.fixture
def built(workspace_factory):
    """D(0) of 10 samples and D(1) built from every kind of decision."""
    ws = workspace_factory("diff")
    s = seed(ws, 10)
    accept(ws, propose(ws, 0, "complexity", s[0], "What is zero doubled?"))
    accept(ws, propose(ws, 0, "quality", s[1], "What is 1 plus 1, exactly?"))
    edit(ws, propose(ws, 0, "quality", s[2], "Rewrite of 2"), "What is two plus two?", "", "Four.")
    accept(ws, propose(ws, 0, "diversity", s[3], "What is 3 minus 3?"))
    edit(ws, propose(ws, 0, "diversity", s[4], "Near 4"), "What is 4 times 4?", "", "Sixteen.")
    # a rewrite identical to a sample D(1) keeps: the original leaves, nothing new comes in
    accept(ws, propose(ws, 0, "complexity", s[5], s[6].instruction, s[6].output))
    reject(ws, propose(ws, 0, "quality", s[7], "Rejected rewrite"))
    report = build_next(ws, 0)
    assert report.size_after == 10 - 4 + 3 + 2  # four originals out, three rewrites and two new in
    return ws, s


def by_kind(changes) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in changes:
        out.setdefault(c.kind, []).append(c)
    return out


def test_counts_per_kind_and_axis(built):
    ws, _ = built
    summary = diff_summary(ws, 0, 1)
    assert (summary.size_a, summary.size_b) == (10, 11)
    assert {k: summary.total(k) for k in ("rewritten", "added", "removed")} == \
        {"rewritten": 3, "added": 2, "removed": 1}
    table = summary.table().set_index("kind")
    assert table.loc["rewritten", ["complexity", "quality", "edited", "total"]].tolist() == [1, 1, 1, 3]
    assert table.loc["added", ["diversity", "edited"]].tolist() == [1, 1]
    assert table.loc["removed", "complexity"] == 1


def test_a_replaced_sample_is_rewritten_not_removed_and_added(built):
    ws, s = built
    kinds = by_kind(diff_page(ws, 0, 1, limit=100))
    rewritten = {c.old_id: c for c in kinds["rewritten"]}
    assert set(rewritten) == {s[0].id, s[1].id, s[2].id}
    simpler = rewritten[s[0].id]
    assert simpler.axis == "complexity"
    assert simpler.old.instruction == "What is 0 plus 0?" and simpler.new.instruction == "What is zero doubled?"
    assert rewritten[s[2].id].axis == "edited" and rewritten[s[2].id].new.output == "Four."
    # augmentations are added beside their sparse source, which stays
    added = {c.new.instruction: c for c in kinds["added"]}
    assert added["What is 3 minus 3?"].axis == "diversity" and added["What is 3 minus 3?"].old is None
    assert added["What is 4 times 4?"].axis == "edited"
    # the rewrite that duplicated a kept sample leaves its original removed
    [removed] = kinds["removed"]
    assert removed.old_id == s[5].id and removed.new is None and removed.axis == "complexity"
    listed = {c.old_id for c in kinds["rewritten"] + kinds["removed"]}
    assert s[3].id not in listed and s[7].id not in listed  # sparse source and rejected: unchanged


def test_a_chain_of_rewrites_compares_the_ends_and_either_way(built):
    ws, s = built
    [simpler] = [c for c in diff_page(ws, 0, 1, kind="rewritten") if c.old_id == s[0].id]
    middle = Sample(instruction=simpler.new.instruction, output=simpler.new.output)
    accept(ws, propose(ws, 1, "quality", middle, "What do you get when you double zero?"))
    [improved] = [c for c in diff_page(ws, 0, 1, kind="rewritten") if c.old_id == s[1].id]
    near = Sample(instruction=improved.new.instruction, output=improved.new.output)
    accept(ws, propose(ws, 1, "diversity", near, "What is 1 plus 2, exactly?"))
    build_next(ws, 1)
    changes = diff_page(ws, 0, 2, limit=100)
    rewritten = {c.old_id: c for c in changes if c.kind == "rewritten"}
    assert rewritten[s[0].id].new.instruction == "What do you get when you double zero?"
    assert rewritten[s[0].id].axis == "quality"  # the newest step's proposal
    assert middle.id not in {c.new_id for c in changes}
    # a new sample written near a rewrite that stays is added, not a second rewrite of its source
    assert rewritten[s[1].id].new_id == near.id
    [new] = [c for c in changes if c.new_id != near.id and c.new and c.new.instruction == "What is 1 plus 2, exactly?"]
    assert (new.kind, new.axis) == ("added", "diversity")
    back = diff_summary(ws, 1, 0)  # newer to older: the same changes seen backwards
    assert {k: back.total(k) for k in ("rewritten", "added", "removed")} == \
        {"rewritten": 3, "added": 1, "removed": 2}
    undo = {c.new_id: c for c in diff_page(ws, 1, 0, kind="rewritten")}
    assert undo[s[1].id].new.instruction == "What is 1 plus 1?"


def test_the_axis_filter(built):
    ws, _ = built
    diversity = diff_page(ws, 0, 1, axis="diversity")
    assert [(c.kind, c.new.instruction) for c in diversity] == [("added", "What is 3 minus 3?")]
    edited = diff_page(ws, 0, 1, axis="edited")
    assert {c.new.instruction for c in edited} == {"What is two plus two?", "What is 4 times 4?"}
    assert [c.kind for c in diff_page(ws, 0, 1, axis="quality", kind="rewritten")] == ["rewritten"]
    assert diff_page(ws, 0, 1, axis="diversity", kind="removed") == []


def test_paging_walks_every_change_once_in_order(workspace_factory):
    ws = workspace_factory("pages")
    s = seed(ws, 30)
    for i in range(25):
        accept(ws, propose(ws, 0, "quality", s[i], f"Clearer question number {i}?"))
    build_next(ws, 0)
    pages = [diff_page(ws, 0, 1, limit=10, offset=o) for o in (0, 10, 20, 30)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    ids = [c.new_id for p in pages for c in p]
    assert len(set(ids)) == 25 and ids == sorted(ids)
    assert diff_summary(ws, 0, 1).total("rewritten", "quality") == 25


def test_samples_imported_into_a_later_version_are_added_without_an_axis(built):
    ws, _ = built
    extra = Sample(instruction="Name a prime number.", output="Seven.")
    with ws.store.write() as con:
        insert_samples(con, samples_frame([extra], iteration=1))
        add_members(con, 1, [extra.id])
    summary = diff_summary(ws, 0, 1)
    assert summary.total("added") == 3 and summary.table().set_index("kind").loc["added", "other"] == 1
    [plain] = [c for c in diff_page(ws, 0, 1, kind="added") if c.new_id == extra.id]
    assert plain.axis is None


def test_exports_hold_every_matching_change_with_both_texts(built, tmp_path):
    ws, s = built
    out = tmp_path / "exports"
    n = export_diff(ws, 0, 1, out / "all.jsonl")
    rows = [json.loads(line) for line in (out / "all.jsonl").read_text().splitlines()]
    assert n == len(rows) == 6 and tuple(rows[0]) == EXPORT_COLUMNS
    simpler = next(r for r in rows if r["old_id"] == s[0].id)
    assert simpler["kind"] == "rewritten" and simpler["axis"] == "complexity"
    assert simpler["old_instruction"] == "What is 0 plus 0?"
    assert simpler["new_instruction"] == "What is zero doubled?"
    assert export_diff(ws, 0, 1, out / "edited.csv", axis="edited") == 2
    with open(out / "edited.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["kind"] for r in table] == ["rewritten", "added"]
    assert table[0]["new_output"] == "Four." and table[1]["old_id"] == ""
    with pytest.raises(VersionDiffError, match=r"\.jsonl or \.csv"):
        export_diff(ws, 0, 1, out / "changes.txt")
    assert sorted(p.name for p in out.iterdir()) == ["all.jsonl", "edited.csv"]


def test_a_missing_version_or_filter_is_named(built):
    ws, _ = built
    assert versions(ws) == {0: 10, 1: 11}
    with pytest.raises(VersionDiffError, match=r"^D\(5\) does not exist in .*; versions: 0, 1$"):
        diff_summary(ws, 0, 5)
    with pytest.raises(VersionDiffError, match="unknown axis 'size'"):
        diff_page(ws, 0, 1, axis="size")
    with pytest.raises(VersionDiffError, match="unknown change kind"):
        diff_page(ws, 0, 1, kind="moved")

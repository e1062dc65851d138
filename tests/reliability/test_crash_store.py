"""SIGKILL during `middo import`, a bulk `middo review` and `middo build`: the store reopens
consistent (all of the interrupted write or none of it) and a rerun finishes the job exactly once."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import (
    check_consistent,
    held_open,
    kill9,
    middo,
    read_position,
    start_middo,
    wait_for,
)

from benchmarks.bench_import import synthetic_records
from middo_core.sample import Sample
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace

IMPORT_N = 30_000
PROPOSALS_N = 20_000


def test_kill_during_import_leaves_nothing_and_the_rerun_imports_everything(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    records = synthetic_records(IMPORT_N, seed=3)
    data = tmp_path / "big.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    distinct = len({json.dumps(r, sort_keys=True) for r in records})
    size = data.stat().st_size
    log = tmp_path / "import.log"

    proc = start_middo("import", ws.root, data, log=log)
    # mid-work: the importer has read a third of the file and holds its open transaction
    wait_for(lambda: read_position(proc.pid, data) > size // 3, what="a third of the file read",
             proc=proc, log=log, interval=0.01)
    kill9(proc)

    state = check_consistent(ws.root)
    assert state["samples"] == 0 and state["sizes"] == {}  # the open transaction is gone whole
    done = middo("import", ws.root, data, "--json")
    rep = json.loads(done.stdout)
    assert rep["n_read"] == IMPORT_N and rep["n_imported"] == distinct
    state = check_consistent(ws.root)
    assert state["samples"] == distinct and state["sizes"] == {0: distinct}
    again = json.loads(middo("import", ws.root, data, "--json").stdout)
    assert again["n_imported"] == 0 and check_consistent(ws.root)["samples"] == distinct


@pytest.fixture(scope="module")
def reviewed_ws(tmp_path_factory):
    """D(0) of 20,000 samples with one pending proposal each (a third per axis)."""
    ws = init_workspace(tmp_path_factory.mktemp("review") / "ws")
    samples = [Sample(instruction=f"Task {i}: explain item {i}.", output=f"Item {i}, explained.")
               for i in range(PROPOSALS_N)]
    axes = ("complexity", "quality", "diversity")
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 0, [s.id for s in samples])
        put_proposals(con, [
            {"id": f"p{i:06d}", "iteration": 0, "axis": axes[i % 3], "source_id": s.id,
             "instruction": f"Rewritten task {i}.", "input": "", "output": f"A new answer {i}.",
             "status": "pending"} for i, s in enumerate(samples)])
    return ws


def test_kill_during_bulk_review_then_build(reviewed_ws, tmp_path):
    ws = reviewed_ws
    db = ws.root / "middo.duckdb"

    # 1. a bulk accept is one transaction: killed inside it, no decision and no audit row remain
    log = tmp_path / "review.log"
    proc = start_middo("review", ws.root, "--iteration", "0", "--bulk", "accept", log=log)
    wait_for(held_open(proc.pid, db, 0.05), what="the bulk decision's transaction", proc=proc,
             log=log, interval=0.005)
    kill9(proc)
    state = check_consistent(ws.root)
    assert state["review_log"] in (0, PROPOSALS_N)  # all or nothing, never part
    middo("review", ws.root, "--iteration", "0", "--bulk", "accept")
    state = check_consistent(ws.root)
    assert state["statuses"] == {"accepted": PROPOSALS_N} and state["review_log"] == PROPOSALS_N

    # 2. build D(1) killed inside its transaction: D(1) is absent, then built once, whole
    log = tmp_path / "build.log"
    proc = start_middo("build", ws.root, "--iteration", "0", log=log)
    wait_for(held_open(proc.pid, db, 0.3), what="the build's transaction", proc=proc, log=log,
             interval=0.01)
    kill9(proc)
    state = check_consistent(ws.root)
    assert 1 not in state["sizes"] and "build" not in state["records"].get(0, ("", {}))[1]
    assert state["samples"] == PROPOSALS_N  # no sample of the killed build survived
    out = json.loads(middo("build", ws.root, "--iteration", "0", "--json").stdout)
    replaced = 2 * PROPOSALS_N // 3 + (1 if PROPOSALS_N % 3 == 2 else 0)
    assert out["removed"] == replaced and out["size_after"] == PROPOSALS_N - replaced + PROPOSALS_N
    state = check_consistent(ws.root)
    assert state["sizes"] == {0: PROPOSALS_N, 1: out["size_after"]}
    assert state["samples"] == 2 * PROPOSALS_N
    refused = middo("build", ws.root, "--iteration", "0", check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr

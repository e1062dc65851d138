"""Several processes on one store: a background refinement job writes proposals while a curator
process decides them and a Studio-like process browses and imports. No lock error reaches any
of them, every write lands exactly once, and each read sees a consistent snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import check_consistent, middo_env, wait_for

from middo_core.config import RefineConfig, WorkspaceConfig
from middo_core.jobs import job_status, start_job
from middo_core.jobs.runfiles import LOG_FILE, run_dir
from middo_core.sample import Sample
from middo_core.store.iterations import upsert_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace
from tests.llm.openai_server import LoopbackOpenAI

pytestmark = pytest.mark.slow
ACTOR = Path(__file__).with_name("concurrent_actor.py")
N_SAMPLES, N_FLAGGED = 300, 120
LOCK_WORDS = ("lock", "busy", "conflicting", "traceback")


def shared_ws(root: Path):
    cfg = WorkspaceConfig(name="shared", refine=RefineConfig(
        backend="openai", model="loopback-model", concurrency=4, max_retries=2, timeout_s=20))
    ws = init_workspace(root, cfg)
    data = [Sample(instruction=f"Explain step {i} of the recipe.", output=f"Step {i}: mix and wait.")
            for i in range(N_SAMPLES)]
    ids = [s.id for s in data]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data))
        set_members(con, 0, ids)
        upsert_iteration(con, 0, status="selected", counts={"flagged_ids": {"complexity": ids[:N_FLAGGED]}})
    return ws


def test_job_curator_and_studio_share_the_store(tmp_path, monkeypatch):
    ws = shared_ws(tmp_path / "ws")
    stop = tmp_path / "stop"
    with LoopbackOpenAI(delay_s=0.1) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # the job worker inherits these
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-shared")
        actors = {role: subprocess.Popen(
            [sys.executable, str(ACTOR), role, str(ws.root), str(tmp_path / f"{role}.json"), str(stop)],
            env=middo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for role in ("review", "studio")}
        # the job starts once both have imported what they use: on a cold or busy machine their
        # start-up alone can outlast the job, and then nothing would run at the same time
        wait_for(lambda: all((tmp_path / f"{role}.ready").exists() or p.poll() is not None
                             for role, p in actors.items()), timeout=120, what="the actors")
        run_id = start_job(ws, "refine", 0, {"axes": ["complexity"]})
        final = wait_for(lambda: (s := job_status(ws, run_id))["status"] in ("done", "failed") and s,
                         timeout=300, what="the refinement job")
        job_done_at = time.time()
        time.sleep(1.0)  # the curator and the Studio go on a little after the job
        stop.touch()
        outputs = {role: p.communicate(timeout=120)[0] for role, p in actors.items()}
        codes = {role: p.returncode for role, p in actors.items()}
    assert final["status"] == "done", final.get("log_tail")
    results = {role: json.loads((tmp_path / f"{role}.json").read_text()) for role in actors}
    assert codes == {"review": 0, "studio": 0}, (outputs, [r["errors"] for r in results.values()])
    job_log = (run_dir(ws, run_id) / LOG_FILE).read_text(errors="replace").lower()
    for text in [*outputs.values(), job_log]:
        assert not any(w in text.lower() for w in LOCK_WORDS), text[-2000:]
    studio, curator = results["studio"], results["review"]
    assert studio["inconsistent"] == []

    # they really ran at the same time as the job
    decisions = curator["decisions"]
    assert sum(t < job_done_at for *_, t in decisions) >= 3
    assert sum(t < job_done_at for t in studio["read_times"]) >= 5

    # every write landed once: the job's proposals, the curator's decisions, the Studio's imports
    state = check_consistent(ws.root)
    last = {pid: action for pid, action, _ in decisions}
    assert state["review_log"] == len(decisions)
    assert sum(state["statuses"].values()) == N_FLAGGED == final["result"]["created"]["complexity"]
    assert state["statuses"].get("accepted", 0) == sum(a == "accepted" for a in last.values())
    assert state["statuses"].get("rejected", 0) == sum(a == "rejected" for a in last.values())
    assert state["sizes"].get(1, 0) == studio["imported"] > 0
    assert server.count == 2 * N_FLAGGED
    assert os.environ["OPENAI_API_KEY"] not in (ws.root / "middo.duckdb").read_bytes().decode("latin-1")

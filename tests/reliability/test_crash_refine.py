"""SIGKILL during `middo refine --backend openai` against a real loopback endpoint: stored
proposals stay, the rerun creates the rest, and no call whose answer had reached the cache (or
whose proposal was stored) is paid for again."""

from __future__ import annotations

import json
import re

import pytest
from reliability_helpers import check_consistent, kill9, middo, middo_env, start_middo, wait_for

from middo_core.config import RefineConfig, WorkspaceConfig
from middo_core.llm.base import ChatRequest
from middo_core.sample import Sample
from middo_core.store.iterations import upsert_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace
from tests.llm.openai_server import LoopbackOpenAI

pytestmark = pytest.mark.slow
N = 48
TASK = re.compile(r"Task (\d{3})\.")


def body_cache_key(body: dict) -> str:
    return ChatRequest(model=body["model"], messages=tuple((m["role"], m["content"]) for m in body["messages"]),
                       temperature=body["temperature"], top_p=body["top_p"],
                       max_tokens=body["max_tokens"]).cache_key()


def stored(ws) -> list[tuple[str, str, str]]:
    with ws.store.read() as con:
        return con.execute("SELECT id, axis, source_id FROM proposals").fetchall()


def test_kill_during_refinement_then_resume_without_paying_twice(tmp_path):
    cfg = WorkspaceConfig(name="refine", refine=RefineConfig(
        backend="openai", model="loopback-model", concurrency=4, max_retries=2, timeout_s=20))
    ws = init_workspace(tmp_path / "ws", cfg)
    data = [Sample(instruction=f"Task {i:03d}. Explain step {i} of making bread in detail.",
                   output=f"Step {i}: knead, rest, bake.") for i in range(N)]
    ids = [s.id for s in data]
    task_of = {s.id: i for i, s in enumerate(data)}
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data))
        set_members(con, 0, ids)
        upsert_iteration(con, 0, status="selected",
                         counts={"flagged_ids": {"complexity": ids[: N // 2], "quality": ids[N // 2:]}})
    cache = ws.artifacts / "llm_cache"
    with LoopbackOpenAI(delay_s=0.15) as server:
        env = middo_env(OPENAI_API_KEY="sk-test-crash", OPENAI_BASE_URL=server.base_url)
        args = ["refine", ws.root, "--iteration", "0", "--json"]
        log = tmp_path / "refine.log"
        proc = start_middo(*args, log=log, env=env)
        wait_for(lambda: len(stored(ws)) > 0, what="the first stored proposals", proc=proc, log=log,
                 interval=0.3)
        kill9(proc)

        # (a file the kill caught mid-write is a ".tmp-" file, never read as an answer)
        cached_at_kill = {p.stem for p in cache.glob("*/*.json") if not p.name.startswith(".tmp-")}
        done_at_kill = stored(ws)
        answered_at_kill = len(server.answer_times)
        first_run = list(server.requests)
        assert 0 < len(done_at_kill) < N and answered_at_kill < 2 * N
        state = check_consistent(ws.root)
        assert sum(state["statuses"].values()) == len(done_at_kill)

        rep = json.loads(middo(*args, env=env).stdout)
        rerun = server.requests[len(first_run):]

    assert rep["skipped_done"] == len(done_at_kill)
    assert sum(rep["created"].values()) + sum(rep["failed"].values()) == N - len(done_at_kill)
    # no request of the rerun is for a sample whose proposal was stored before the kill
    done_tasks = {task_of[src] for _, _, src in done_at_kill}
    rerun_tasks = {int(m.group(1)) for b in rerun if (m := TASK.search(b["messages"][-1]["content"]))}
    assert not done_tasks & rerun_tasks
    # every answer that had reached the cache came from it: the only repeats are calls that were
    # in flight at the kill (answered by the server, never received), at most `concurrency`
    first_keys = {body_cache_key(b) for b in first_run}
    repeats = [k for k in map(body_cache_key, rerun) if k in first_keys]
    assert not set(repeats) & cached_at_kill
    assert len(repeats) <= cfg.refine.concurrency
    assert rep["usage"]["cache_hits"] >= len(cached_at_kill) - 2 * len(done_at_kill)
    state = check_consistent(ws.root)
    with ws.store.read() as con:
        per_source = con.execute("SELECT axis, source_id, count(*) FROM proposals GROUP BY ALL").fetchall()
        status = con.execute("SELECT status FROM iterations WHERE number = 0").fetchall()[0][0]
    assert len(per_source) == N and all(n == 1 for *_, n in per_source)
    assert status == "refined"

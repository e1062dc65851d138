"""Every fault the LLM client can meet ends as a failed proposal with its reason, or a proposal
not created and reported; never a corrupt dataset: review and build afterwards give a valid next
version with no null or empty text, and the export reads back clean."""

from __future__ import annotations

import json
import socket

from reliability_helpers import check_consistent
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.config import RefineConfig, WorkspaceConfig
from middo_core.data import export_dataset
from middo_core.llm import LLMConfigError
from middo_core.refine import refine
from middo_core.sample import Sample
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace
from tests.llm.openai_server import LoopbackOpenAI, default_answer

runner = CliRunner()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


def proposals(ws) -> dict[str, tuple]:
    with ws.store.read() as con:
        rows = con.execute("SELECT source_id, axis, status, reason, instruction, output FROM proposals").fetchall()
    return {(src, axis): (status, reason, ins, out) for src, axis, status, reason, ins, out in rows}


def test_faults_leave_reasons_and_the_next_version_is_clean(tmp_path, monkeypatch):
    cfg = WorkspaceConfig(name="faults", refine=RefineConfig(
        backend="openai", model="loopback-model", max_retries=0, timeout_s=0.5, concurrency=16))
    ws = init_workspace(tmp_path / "ws", cfg)
    data = [Sample(instruction=f"Task {i:02d}: summarise chapter {i}.", output=f"Chapter {i} in brief.")
            for i in range(24)]
    ids = [s.id for s in data]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data))
        set_members(con, 0, ids)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-faults")

    def answer(body):
        prompt = body["messages"][-1]["content"]
        if "Task 10:" in prompt:
            return "I'm sorry, but I can't help with rewriting this."
        if "Task 11:" in prompt:
            return "Here is an easier version: count to three."  # no marker
        return default_answer(body)

    with LoopbackOpenAI(answer=answer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        server.hang_s = 2.0
        # 1. HTTP 429 and 500, a hang past the timeout, malformed JSON, a refusal, no marker; each
        # fault on its own sample's first call (16 calls in flight arrive in any order)
        planned = {"Task 00:": "429", "Task 01:": "500", "Task 02:": "hang", "Task 03:": "malformed"}

        def fault_for(body):
            prompt = body["messages"][-1]["content"]
            return next((planned.pop(task) for task in list(planned) if task in prompt), None)

        server.fault_for = fault_for
        rep = refine(ws, 0, {"complexity": ids[:12]})
        server.fault_for = None
        assert rep.total_failed == 6 and rep.total_created == 6, rep.failure_reasons
        reasons = " | ".join(rep.failure_reasons)
        for expected in ("HTTP 429", "HTTP 500", "timeout after 0.5 s", "malformed response",
                         "refused", "marker"):
            assert expected in reasons, (expected, reasons)

        # 2. a budget: calls stop once it is spent; the rest are not created, and reported
        ws.config.refine.budget_usd = 0.01  # about four calls
        ws.config.refine.price_per_1k_input = 0.1
        ws.config.refine.concurrency = 1
        rep = refine(ws, 0, {"quality": ids[18:24]})
        assert rep.not_created_budget >= 3 and not rep.complete
        assert rep.total_created + rep.total_failed + rep.not_created_budget == 6
        ws.config.refine.budget_usd = None
        ws.config.refine.concurrency = 16

        # 3. a bad key stops the run at once with a sentence, storing nothing wrong
        server.faults.extend(["401"] * 16)
        try:
            refine(ws, 0, {"quality": ids[12:14]})
        except LLMConfigError as exc:
            assert "HTTP 401" in str(exc) and "sk-test-faults" not in str(exc)
        else:
            raise AssertionError("a 401 must stop the run")
        server.faults.clear()

    # 4. connection refused: nothing listens at the endpoint any more
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    rep = refine(ws, 0, {"quality": ids[12:18]})
    assert all(r.startswith(("rewrite call failed: connection error", "response call failed"))
               for r in rep.failure_reasons), rep.failure_reasons

    stored = proposals(ws)
    for status, reason, ins, out in stored.values():
        assert status in ("pending", "failed")
        assert (status == "failed") == bool(reason)
        if status == "pending":
            assert ins and ins.strip() and out and out.strip()
    # a proposal written without an input field (a backend that leaves it NULL)
    with ws.store.write() as con:
        put_proposals(con, [{"id": "no-input", "iteration": 0, "axis": "quality", "source_id": ids[16],
                             "instruction": "Summarise chapter sixteen in one line.", "input": None,
                             "output": "Chapter sixteen, in one line.", "status": "pending"}])
    failed_id = next(iter(_ids(ws, "failed")))
    refused = runner.invoke(app, ["review", str(ws.root), "--iteration", "0", "--accept", failed_id])
    assert refused.exit_code == 1 and "failed" in refused.output
    done = runner.invoke(app, ["review", str(ws.root), "--iteration", "0", "--bulk", "accept"])
    assert done.exit_code == 0, done.output
    built = runner.invoke(app, ["build", str(ws.root), "--iteration", "0", "--json"])
    assert built.exit_code == 0, built.output
    accepted = _ids(ws, "accepted")
    assert len(accepted) == sum(s == "pending" for s, *_ in stored.values()) + 1
    assert len(_ids(ws, "failed")) == sum(s == "failed" for s, *_ in stored.values())

    state = check_consistent(ws.root)
    assert state["sizes"][1] == json.loads(built.stdout)["size_after"]
    with ws.store.read() as con:
        nulls = con.execute("""SELECT count(*) FROM dataset_members m JOIN samples s ON s.id = m.sample_id
            WHERE m.iteration = 1 AND (s.instruction IS NULL OR s.output IS NULL OR s.input IS NULL
              OR trim(s.instruction) = '' OR trim(s.output) = '' OR s.input = 'nan')""").fetchall()[0][0]
        from_failed = con.execute("""SELECT count(*) FROM samples s JOIN proposals p ON p.id = s.proposal_id
            WHERE p.status = 'failed'""").fetchall()[0][0]
        edited_input = con.execute("SELECT input FROM samples WHERE proposal_id = 'no-input'").fetchall()
    assert nulls == 0 and from_failed == 0 and edited_input == [("",)]
    out = export_dataset(ws, tmp_path / "d1.jsonl", "jsonl", iteration=1)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == state["sizes"][1]
    assert all(isinstance(r["instruction"], str) and r["instruction"].strip() and r["output"].strip()
               and isinstance(r.get("input", ""), str) for r in lines)


def _ids(ws, status: str) -> set[str]:
    with ws.store.read() as con:
        return {r[0] for r in con.execute("SELECT id FROM proposals WHERE status = ?", [status]).fetchall()}

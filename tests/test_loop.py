"""The closed loop end to end on a real workspace: tiny models, a real store, a loopback LLM."""

from __future__ import annotations

import json
import secrets

import pytest

from middo_core.data import create_demo_workspace
from middo_core.loop import next_action, run_loop, step_states
from middo_core.review import audit_trail, review_counts
from middo_core.store.audit import audit_log
from middo_core.store.samples import dataset_ids
from middo_core.tables import iteration_table, metrics_table
from middo_core.variants import create_variant
from tests.llm.openai_server import LoopbackOpenAI

pytestmark = pytest.mark.slow


@pytest.fixture
def llm(monkeypatch):
    with LoopbackOpenAI() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + secrets.token_hex(8))
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def small_demo(tmp_path, tiny_model, review: str):
    ws = create_demo_workspace(tmp_path / "demo", size=80)
    cfg = ws.config
    cfg.base_model = tiny_model
    cfg.signals.max_len = 128
    cfg.train.max_len = 128
    cfg.train.batch_size = 8
    cfg.eval.suite = ["heldout"]
    cfg.refine.backend = "openai"
    cfg.refine.model = "loopback-model"
    cfg.selection.m_complexity, cfg.selection.m_diversity, cfg.selection.m_quality = 0.5, -1.0, -1.0
    cfg.loop.review = review
    ws.save_config()
    return ws


def test_automatic_loop_runs_and_versions_follow_the_rule(tmp_path, tiny_model, llm):
    ws = small_demo(tmp_path, tiny_model, review="auto")
    with ws.store.read() as con:
        d0 = set(dataset_ids(con, 0))
    report = run_loop(ws, iterations=1, actor="ola@example.com")  # as a signed-in owner's job runs it
    assert report.stopped_at is None and report.iterations_done == 1
    assert report.steps_run[:2] == ["train 0", "evaluate 0"]
    assert "build 1" in report.steps_run and report.steps_run[-1] == "evaluate 1"

    with ws.store.read() as con:
        d1 = set(dataset_ids(con, 1))
        rec = con.execute("SELECT counts FROM iterations WHERE number = 0").fetchall()[0][0]
    counts = json.loads(rec)
    build = counts["build"]
    flagged = counts["flagged_ids"]
    accepted = review_counts(ws, 0)
    # every valid proposal was accepted by the policy, none left pending
    assert all("pending" not in by for by in accepted.values())
    replaced_sources = {sid for axis in ("complexity", "quality") for sid in flagged.get(axis, [])}
    n_replaced = build["removed"]
    assert n_replaced <= len(replaced_sources)
    assert len(d1) == len(d0) - n_replaced + sum(build["added"].values())
    assert d0 - d1 <= replaced_sources  # only hard or low samples ever leave
    assert {sid for sid in flagged.get("diversity", [])} - replaced_sources <= d1  # sparse stay

    table = iteration_table(ws)
    assert list(table["iteration"]) == [0, 1] and table.iloc[1]["size"] == len(d1)
    assert set(metrics_table(ws).columns) == {0, 1}
    assert not step_states(ws, 1)["diagnosed"] and step_states(ws, 1)["evaluated"]
    assert next_action(ws, 1) == "diagnose"

    # the whole loop's audit trail: the owner's selection and build, the policy's decisions
    with ws.store.read() as con:
        log = audit_log(con)
    assert [tuple(r) for r in log[["actor", "action", "iteration"]].itertuples(index=False)] == [
        ("ola@example.com", "select", 0), ("ola@example.com", "build", 1)]
    decided = audit_trail(ws)
    assert 0 < len(decided) == sum(by.get("accepted", 0) + by.get("rejected", 0) for by in accepted.values())
    assert set(decided["actor"]) == {"policy:auto"}

    calls = llm.count
    again = run_loop(ws, iterations=1)  # resuming a finished loop repeats nothing
    assert again.steps_run == [] and llm.count == calls


def test_manual_review_stops_the_loop_and_resume_goes_on(tmp_path, tiny_model, llm):
    ws = small_demo(tmp_path, tiny_model, review="manual")
    first = run_loop(ws, iterations=1)
    assert first.stopped_at == "review" and first.stopped_iteration == 0
    assert next_action(ws, 0) == "review"
    calls = llm.count
    from middo_core.review import bulk_decide

    bulk_decide(ws, 0, "reject", actor="curator")
    second = run_loop(ws, iterations=1)
    assert second.steps_run == ["build 1", "train 1", "evaluate 1"]
    assert llm.count == calls  # no LLM call repeated on resume
    with ws.store.read() as con:
        assert set(dataset_ids(con, 1)) == set(dataset_ids(con, 0))  # all rejected: D(1) = D(0)

    control = create_variant(ws, random_control=True)
    ablation = create_variant(ws, without="score")
    assert ablation.config.loop.axes == ["complexity", "diversity"]
    assert step_states(control, 0)["evaluated"]  # M(0) and its scores are shared, not retrained
    rep = run_loop(control, iterations=1)
    assert "train 0" not in rep.steps_run and "select 0" in rep.steps_run
    with control.store.read() as con:
        c = json.loads(con.execute("SELECT counts FROM iterations WHERE number = 0").fetchall()[0][0])
    with ws.store.read() as con:
        m = json.loads(con.execute("SELECT counts FROM iterations WHERE number = 0").fetchall()[0][0])
    assert c["selection"]["flagged"] == m["selection"]["flagged"]  # same numbers, random samples


def test_a_loop_started_from_the_studio_is_resumed_with_its_settings(workspace_factory):
    """The Studio starts the loop as a job: it is recorded as `middo loop` records it, so that
    `middo loop --resume` goes on with the same settings, not middo.yaml's."""
    from typer.testing import CliRunner

    from middo_core.cli import app
    from middo_core.loop import LoopError, last_loop, loop_job

    ws = workspace_factory("studio-loop", loop={"iterations": 3, "review": "manual"})
    with pytest.raises(LoopError, match="D\\(0\\) is empty"):  # stops at once, once recorded
        loop_job(ws, "loop-1", None, {"iterations": 2}, lambda event: None)
    assert last_loop(ws)["settings"] == {"iterations": 2, "review": "manual"}
    assert not last_loop(ws)["finished"]
    resumed = CliRunner().invoke(app, ["loop", str(ws.root), "--resume"])
    assert "Resuming the loop started at" in resumed.output
    assert "--iterations 2 --review manual" in resumed.output

"""The CLI around diagnosis: middo diagnose, select and signals on a real workspace; quality wired in."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.diagnose import diagnose
from middo_core.sample import Sample
from middo_core.store.iterations import get_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.store.signals import QUALITY_COLUMNS, load_signals

runner = CliRunner()


def make_samples(n: int) -> list[Sample]:
    topics = ["pasta", "rivers", "prime numbers", "taxes", "tennis", "volcanoes", "poetry"]
    return [Sample(instruction=f"Tell me about {topics[i % len(topics)]} (question {i}).",
                   output=f"Here is fact number {i} about {topics[i % len(topics)]}.") for i in range(n)]


def fill(ws, samples: list[Sample]) -> None:
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 0, [s.id for s in samples])


@pytest.fixture
def ws(workspace_factory, tiny_model):
    ws = workspace_factory("cli", base_model=tiny_model)
    fill(ws, make_samples(30))
    return ws


def test_diagnose_select_and_export(ws, tmp_path):
    res = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "complexity,diversity", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["n"] == 30 and report["post_model_is_base"] and report["computed"]["post"] == 30
    assert set(report["summary"]) == {"loss_pre", "loss_post", "diversity"}

    human = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "complexity,diversity"])
    assert human.exit_code == 0 and "not trained yet" in human.output
    assert "0 samples computed (30 from cache)" in human.output

    res = runner.invoke(app, ["select", str(ws.root), "--m-complexity", "0", "--m-diversity", "-0.5",
                              "--json"])
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout)
    assert counts["n"] == 30 and counts["m"]["complexity"] == 0.0
    assert 0 < counts["union"] <= 30 and counts["flagged"]["quality"] == 0  # quality not diagnosed
    with ws.store.read() as con:
        rec = get_iteration(con, 0)
    assert rec["status"] == "selected" and rec["m_diversity"] == -0.5

    res = runner.invoke(app, ["select", str(ws.root), "--auto", "--target", "0.2", "--json"])
    assert res.exit_code == 0, res.output

    out = tmp_path / "signals.parquet"
    res = runner.invoke(app, ["signals", str(ws.root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out)
    assert len(table) == 30 and {"id", "instruction", "input", "output", "loss_pre", "loss_post",
                                  "diversity", "neighbours", "truncated", "empty_response",
                                  *QUALITY_COLUMNS} <= set(table.columns)


def test_bad_arguments_give_one_clear_sentence(ws):
    res = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "loss"])
    assert res.exit_code == 1 and "unknown signal loss" in res.output
    res = runner.invoke(app, ["diagnose", str(ws.root), "--iteration", "3"])
    assert res.exit_code == 1 and "D(3) has no samples" in res.output
    res = runner.invoke(app, ["select", str(ws.root)])
    assert res.exit_code == 1 and "diagnose it first" in res.output


def test_quality_is_judged_by_the_post_model_and_cached(workspace_factory, tiny_model):
    ws = workspace_factory("quality", base_model=tiny_model, signals={"quality_mode": "logprobs"})
    fill(ws, make_samples(4))
    rep = diagnose(ws, 0, signals=("quality",))
    assert rep.judge_model == tiny_model and rep.computed["quality"] == 4 and rep.tokens["quality"] > 0
    with ws.store.read() as con:
        frame = load_signals(con, 0)
    assert frame[list(QUALITY_COLUMNS)].notna().all().all()
    assert frame["quality"].between(0, 10).all()
    again = diagnose(ws, 0, signals=("quality",))
    assert again.computed["quality"] == 0 and again.tokens["quality"] == 0


def test_faithful_flag_uses_the_paper_layout_for_this_run_only(ws):
    ws.config.signals.quality_mode = "logprobs"  # the layout is the self-judge's
    ws.save_config()
    shared = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "quality", "--json"])
    assert shared.exit_code == 0, shared.output
    faithful = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "quality", "--faithful",
                                   "--json"])
    assert faithful.exit_code == 0, faithful.output
    a, b = json.loads(shared.stdout), json.loads(faithful.stdout)
    assert a["quality"]["faithful"] is False and b["quality"]["faithful"] is True
    assert b["computed"]["quality"] == 30  # another layout, another cache entry: computed again
    assert b["tokens"]["quality"] > 2 * a["tokens"]["quality"]  # every prompt fed in full
    assert "faithful: true" not in (ws.root / "middo.yaml").read_text()  # middo.yaml unchanged
    # the library call takes it as a parameter and leaves the workspace's config alone
    rep = diagnose(ws, 0, signals=("quality",), faithful=True)
    assert rep.quality["faithful"] is True and rep.computed["quality"] == 0  # the faithful cache
    assert ws.config.signals.faithful is False


def test_pmi_counts_what_its_two_passes_covered(workspace_factory, tiny_model):
    ws = workspace_factory("pmi-cli", base_model=tiny_model, signals={"quality_mode": "pmi"})
    # two samples share a response: after an empty user turn they are one sequence
    samples = make_samples(6) + [Sample(instruction="Another question.", output=make_samples(1)[0].output)]
    fill(ws, samples)
    first = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "quality"])
    assert first.exit_code == 0, first.output
    # 7 conditional losses + 6 distinct bare responses, nothing cached yet
    assert "quality pass: 13 sequences computed (0 from cache)" in first.output
    again = runner.invoke(app, ["diagnose", str(ws.root), "--signals", "quality"])
    assert "quality pass: 0 sequences computed (13 from cache)" in again.output

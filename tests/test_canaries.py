"""Canaries and signal health: synthetic defects scored beside every diagnosis, kept out of every
dataset, and the figures a curator reads from them (CLI, JSON); curators' verdicts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from middo_core.canaries import AXIS_OF_KIND, KINDS, make_canaries, per_kind, sentences
from middo_core.data.demo import build_demo, create_demo_workspace
from middo_core.health import health_of, signal_health, verdict_precision
from middo_core.review import mark
from middo_core.sample import Sample
from middo_core.selection import SignalTable, flagged_sets, signal_table
from middo_core.store.canaries import load_canaries
from middo_core.store.signals import load_signals


def demo_samples(size: int = 400) -> dict[str, Sample]:
    return {s.id: s for s, _task in build_demo(size)["train"]}


def test_each_kind_is_a_defect_of_its_source_and_the_set_is_fixed_by_the_seed():
    samples = demo_samples()
    count = per_kind(len(samples), len(KINDS))
    assert count * len(KINDS) <= 0.10 * len(samples)  # the model work stays within 10%
    canaries = make_canaries(samples, count, seed=0)
    assert Counter(c.kind for c in canaries) == {k: count for k in KINDS}
    assert [c.id for c in make_canaries(samples, count, seed=0)] == [c.id for c in canaries]
    assert {c.id for c in make_canaries(samples, count, seed=1)} != {c.id for c in canaries}
    outputs = {s.output for s in samples.values()}
    for c in canaries:
        src, bad = samples[c.source_id], c.sample
        assert c.id not in samples and c.axis == AXIS_OF_KIND[c.kind]
        if c.kind != "transliterated":
            assert bad.prompt == src.prompt  # the same request, a defective answer
        if c.kind == "swapped":
            assert bad.output != src.output and bad.output in outputs
        elif c.kind == "truncated":
            assert src.output.startswith(bad.output) and len(bad.output) < 0.7 * len(src.output)
        elif c.kind == "shuffled":
            assert sorted(bad.output.split()) == sorted(src.output.split())
            assert bad.output.split() != src.output.split()  # the sentences in another order
        elif c.kind == "looped":
            first = sentences(src.output)[0]
            assert bad.output.count(first) >= 3
        elif c.kind == "echo":
            assert bad.output == src.prompt
        elif c.kind == "noised":
            assert bad.output != src.output and len(bad.output.split()) == len(src.output.split())
        elif c.kind == "scrambled":
            assert sorted(bad.output.split()) == sorted(src.output.split()) != bad.output.split()
        elif c.kind == "transliterated":
            assert not re.search("[A-Za-z]", bad.prompt) and bad.output == src.output


def canary_frame(table: SignalTable, rng, kinds: dict[str, dict[str, float]], n: int = 12) -> pd.DataFrame:
    """Canaries of each kind made from random sources, their values shifted from the source's."""
    rows = []
    for kind, shift in kinds.items():
        for j, src in enumerate(rng.choice(len(table), n, replace=False)):
            row = {"id": f"{kind}-{j}", "kind": kind, "axis": AXIS_OF_KIND[kind],
                   "source_id": table.ids[src]}
            for column, delta in shift.items():
                value = table.values[column][src]
                row[column] = rng.normal(5, 1) if delta is None else value + delta
            rows.append(row)
    return pd.DataFrame(rows)


def test_health_tells_a_working_signal_from_one_at_chance():
    rng = np.random.default_rng(0)
    n = 400
    pre = rng.gamma(4, 0.5, n)
    table = SignalTable(pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)], "loss_pre": pre, "loss_post": pre * 0.7,
        "diversity": rng.beta(8, 2, n), "quality": rng.normal(5, 1, n)}))
    canaries = canary_frame(table, rng, {
        "noised": {"loss_pre": 3.0, "loss_post": 3.0},  # the loss sees them
        "truncated": {"quality": None},  # quality is noise: values unrelated to the source's
        "shuffled": {"quality": None},
        "transliterated": {"diversity": -0.5},
    })
    health = health_of(0, table, canaries, {"complexity": 1.0, "diversity": -1.5, "quality": -1.5})
    assert health.axes["complexity"].status == "good" and health.axes["complexity"].auroc > 0.9
    assert health.axes["complexity"].recall == 1.0  # every noised canary is above both taus
    quality = health.axes["quality"]
    assert quality.status == "near chance" and 0.3 < quality.auroc < 0.65
    assert "quality_mode" in quality.message and "judge_model" in quality.message
    assert health.warnings() == [quality.message]
    lenient = health_of(0, table, canaries, {"complexity": 1.0, "diversity": -1.5, "quality": 1.5})
    assert lenient.axes["quality"].recall > quality.recall  # recall follows m
    by_kind = {k.kind: k for k in health.kinds}
    assert by_kind["noised"].auroc["loss_post"] > 0.9
    assert by_kind["noised"].sources_flagged < by_kind["noised"].recall


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory, tiny_model):
    """The demo (72 training samples) diagnosed under the tiny model, with canaries and without."""
    from middo_core.diagnose import diagnose

    out = {}
    for name, enabled in (("with", True), ("without", False)):
        ws = create_demo_workspace(tmp_path_factory.mktemp("canaries") / name, size=80)
        ws.config.base_model = tiny_model
        ws.config.signals.quality_mode = "pmi"
        ws.config.canaries.enabled = enabled
        ws.save_config()
        out[name] = (ws, diagnose(ws, 0, map_limit=0))
    return out


def test_canaries_are_scored_and_stored_apart_from_every_dataset(diagnosed, tmp_path):
    from middo_core.build import build_next
    from middo_core.data.exporter import export_dataset, load_dataset_samples

    ws, rep = diagnosed["with"]
    plain_ws, plain = diagnosed["without"]
    with ws.store.read() as con:
        canaries = load_canaries(con, 0, text=True)
        stored = con.execute("SELECT id FROM samples").fetchall()
        members = con.execute("SELECT sample_id FROM dataset_members").fetchall()
    ids = set(canaries["id"])
    assert rep.canaries["count"] == len(ids) == 16 and set(canaries["kind"]) == set(KINDS)
    assert canaries[["loss_pre", "loss_post", "diversity", "quality"]].notna().all(axis=None)
    assert 0 < rep.canaries["token_share"] < 0.3 and rep.canaries["tokens"] > 0
    assert rep.computed == plain.computed and rep.tokens == plain.tokens  # counted apart
    assert not ids & {r[0] for r in stored} and not ids & {r[0] for r in members}
    with ws.store.read() as con, plain_ws.store.read() as plain_con:
        ours, theirs = load_signals(con, 0), load_signals(plain_con, 0)
    assert not ids & set(ours["sample_id"])
    pd.testing.assert_frame_equal(ours, theirs)  # the samples' values, to the bit: same thresholds
    table = signal_table(ws, 0)
    assert table.stats == signal_table(plain_ws, 0).stats
    assert flagged_sets(ws, 0) == flagged_sets(plain_ws, 0)  # the flag counts
    export = export_dataset(ws, tmp_path / "d0.json", format="alpaca", iteration=0)
    exported = {(r["instruction"], r["output"]) for r in json.loads(export.read_text())}
    assert len(exported) == len(table) and not exported & set(zip(canaries["instruction"],
                                                                    canaries["output"], strict=True))
    build_next(ws, 0)
    assert not ids & {s.id for s in load_dataset_samples(ws, 1)[1]}  # the next version, its training set


def test_the_cli_prints_health_and_the_json_carries_it(diagnosed):
    from typer.testing import CliRunner

    from middo_core.cli import app

    ws, _ = diagnosed["with"]
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args])

    shown = run("signals", ws.root, "--health", "--iteration", "0")
    assert shown.exit_code == 0, shown.output
    assert re.search(r"quality\s+AUROC \d\.\d\d on 10 canaries, recall at m \d+%", shown.stdout)
    assert all(kind in shown.stdout for kind in KINDS)
    status = json.loads(run("status", ws.root, "--json").stdout)
    assert set(status["health"]["axes"]) == {"complexity", "diversity", "quality"}
    assert {k["kind"] for k in status["health"]["kinds"]} == set(KINDS)
    chosen = json.loads(run("select", ws.root, "--iteration", "0", "--m-quality", "1", "--json").stdout)
    assert chosen["health"]["m"]["quality"] == 1.0
    again = run("diagnose", ws.root, "--iteration", "0")
    assert "signal health" in again.stdout and "canaries: 16" in again.stdout
    assert "quality: pmi (signals.quality_mode is set to pmi)" in again.stdout  # the mode and why


def test_verdicts_change_the_precision_shown_and_suggest_an_m(diagnosed):
    ws, _ = diagnosed["with"]
    table = signal_table(ws, 0)
    m = {"complexity": 1.0, "diversity": -0.5, "quality": -1.5}
    flagged = table.select(m["complexity"], m["diversity"], m["quality"]).flagged_ids("diversity")
    assert len(flagged) >= 3
    assert verdict_precision(ws, 0, table, m)["diversity"].precision is None  # nothing marked yet
    order = sorted(flagged, key=lambda s: table.values["diversity"][list(table.ids).index(s)])
    for sid in order[:2]:
        mark(ws, 0, sid, "real", axis="diversity", actor="ana")
    mark(ws, 0, order[-1], "false_alarm", axis="diversity", actor="ana")
    found = verdict_precision(ws, 0, table, m)["diversity"]
    assert (found.real, found.false_alarm, found.precision) == (2, 1, pytest.approx(0.667, abs=1e-3))
    assert found.suggested_m is not None and found.suggested_m < m["diversity"]  # stricter
    mark(ws, 0, order[-1], "cleared", axis="diversity", actor="ana")  # withdrawn
    assert verdict_precision(ws, 0, table, m)["diversity"].precision == 1.0
    health = signal_health(ws, 0, table=table, m=m)
    assert health is not None and health.m == m


def test_review_marks_verdicts_from_the_cli_and_the_lineage_keeps_them(diagnosed):
    from middo_core.build import lineage

    ws, _ = diagnosed["with"]
    sid = flagged_sets(ws, 0)["complexity"][0]
    done = subprocess.run([sys.executable, "-m", "middo_core.cli", "review", str(ws.root),
                           "--iteration", "0", "--false-alarm", sid, "--axis", "complexity",
                           "--actor", "bo", "--note", "hard but fine"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"verdict on {sid} (complexity): false alarm" in done.stdout
    said = lineage(ws, sid)[0]["verdicts"]
    assert [(v["axis"], v["verdict"], v["actor"], v["note"]) for v in said][-1] == (
        "complexity", "false_alarm", "bo", "hard but fine")
    bad = subprocess.run([sys.executable, "-m", "middo_core.cli", "review", str(ws.root),
                          "--iteration", "0", "--real", "no-such-id"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no-such-id: neither a proposal" in bad.stderr

"""The built-in demo workspace: deterministic, fast, planted defects labelled outside the store."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest
from data_helpers import stored_samples

from middo_core.data.demo import (
    EVAL_FILE,
    LABELS_FILE,
    create_demo_workspace,
    load_demo_eval,
    load_planted_labels,
)
from middo_core.workspace import WorkspaceError, open_workspace


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "demo"
    start = time.perf_counter()
    ws = create_demo_workspace(root)
    return ws, time.perf_counter() - start


def test_demo_is_fast_and_has_train_and_heldout_splits(demo):
    ws, seconds = demo
    assert seconds < 5
    train, heldout = stored_samples(ws), stored_samples(ws, split="heldout")
    assert len(train) + len(heldout) == 400
    assert len(heldout) == 40
    assert not {s.id for s in train} & {s.id for s in heldout}
    assert open_workspace(ws.root).config.base_model == "smollm2-135m"


def test_same_size_gives_the_same_samples_every_time(demo, tmp_path):
    ws, _ = demo
    again = create_demo_workspace(tmp_path / "again")
    assert [s.id for s in stored_samples(again)] == [s.id for s in stored_samples(ws)]
    assert load_planted_labels(again) == load_planted_labels(ws)
    assert (again.artifacts / EVAL_FILE).read_text() == (ws.artifacts / EVAL_FILE).read_text()
    smaller = create_demo_workspace(tmp_path / "small", size=100)
    assert len(stored_samples(smaller)) + len(stored_samples(smaller, split="heldout")) == 100


def test_planted_labels_cover_three_axes_and_stay_out_of_the_store(demo):
    ws, _ = demo
    labels = load_planted_labels(ws)
    train_ids = {s.id for s in stored_samples(ws)}
    assert set(labels) <= train_ids  # held-out samples are clean
    per_axis = Counter(v["axis"] for v in labels.values())
    for axis in ("quality", "complexity", "diversity"):
        assert 0.05 * 400 <= per_axis[axis] <= 0.08 * 400, per_axis
    kinds = {(v["axis"], v["kind"]) for v in labels.values()}
    assert kinds == {("quality", "wrong_answer"), ("quality", "irrelevant"), ("quality", "truncated"),
                     ("complexity", "convoluted"), ("complexity", "verbose"),
                     ("complexity", "nested"), ("diversity", "isolated_topic")}
    with ws.store.read() as con:  # no table or column mentions the labels
        dump = json.dumps(con.execute("SELECT * FROM samples").df().astype(str).values.tolist())
    assert "wrong_answer" not in dump and "isolated_topic" not in dump
    assert (ws.artifacts / LABELS_FILE).exists()


def test_planted_wrong_answers_are_really_wrong(demo):
    ws, _ = demo
    labels = load_planted_labels(ws)
    samples = {s.id: s for s in stored_samples(ws)}
    arithmetic = 0
    for sid, label in labels.items():
        s = samples[sid]
        m = re.fullmatch(r"We compute (\d+) ([+\-×÷]) (\d+) = (\d+)\.\n\nAnswer: (\d+)", s.output)
        if label["kind"] == "wrong_answer" and m:
            a, op, b, shown = int(m[1]), m[2], int(m[3]), int(m[4])
            true = {"+": a + b, "-": a - b, "×": a * b, "÷": a // b if b else None}[op]
            assert shown != true
            arithmetic += 1
    clean = [s for sid, s in samples.items() if sid not in labels]
    for s in clean:  # and the clean ones are right
        m = re.fullmatch(r"We compute (\d+) ([+\-×÷]) (\d+) = (\d+)\.\n\nAnswer: (\d+)", s.output)
        if m:
            a, op, b = int(m[1]), m[2], int(m[3])
            assert int(m[4]) == {"+": a + b, "-": a - b, "×": a * b, "÷": a // b}[op]
    assert arithmetic >= 1


def test_heldout_eval_items_match_the_heldout_split(demo):
    ws, _ = demo
    items = load_demo_eval(ws)
    heldout = {s.id: s for s in stored_samples(ws, split="heldout")}
    assert {it["id"] for it in items} == set(heldout)
    for it in items:
        sample = heldout[it["id"]]
        assert it["prompt"] == sample.prompt and it["answer"]
        assert sample.output.endswith(it["answer"])  # the reference response states the answer


def test_demo_refuses_an_existing_workspace_and_bad_sizes(demo, tmp_path):
    ws, _ = demo
    with pytest.raises(WorkspaceError):
        create_demo_workspace(ws.root)
    with pytest.raises(ValueError, match="between"):
        create_demo_workspace(tmp_path / "tiny", size=3)

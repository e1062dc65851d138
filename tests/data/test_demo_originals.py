"""The demo's record of clean originals: each planted sample's sample before its defect, kept
outside the store, with the generated samples and their ids exactly as they were before it."""

from __future__ import annotations

import hashlib
import json

import pytest

from middo_core.data.demo import (
    ORIGINALS_FILE,
    build_demo,
    create_demo_workspace,
    load_planted_labels,
    load_planted_originals,
)
from middo_core.sample import Sample

# sha256 of the demo's ids (train then held-out, one a line) and of its labels, taken before the
# originals were recorded: recording them must not change a single generated sample
PINNED = {
    40: ("cfac4efd2b7969b8c76d3ed9c4443fc80e391e994f58df16e633f70576a3cd87",
         "04646ed57ab2995139acd044439afe615bfd500a2dcd62f601a83fd9aa787ad7"),
    400: ("55af7dcf3885ef3bde4b6498507037e549300d28eee40975b1da3cfaba942263",
          "be7870bd198f63d5d6568eaf4e7cdbf4cd74d6fad92bacf1f6b81eaf3f27219c"),
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("size", sorted(PINNED))
def test_recording_originals_leaves_the_samples_and_labels_unchanged(size):
    demo = build_demo(size)
    ids = [s.id for s, _ in demo["train"]] + [s.id for s, _ in demo["heldout"]]
    assert _sha("\n".join(ids)) == PINNED[size][0]
    assert _sha(json.dumps(demo["labels"], sort_keys=True)) == PINNED[size][1]


def test_every_planted_sample_has_its_clean_original():
    demo = build_demo(400)
    labels, originals = demo["labels"], demo["originals"]
    assert set(originals) == set(labels)
    train = {s.id: s for s, _ in demo["train"]}
    heldout = {s.id for s, _ in demo["heldout"]}
    for sid, label in labels.items():
        clean = Sample(**originals[sid])
        if label["axis"] == "diversity":
            assert clean.id == sid  # an isolated topic is not broken: it is its own original
            continue
        planted = train[sid]
        assert clean.id != sid
        assert clean.id not in train and clean.id not in heldout  # no duplicate, no leak
        if label["axis"] == "quality":  # the defect is in the response; the prompt is the task's
            assert (clean.instruction, clean.input) == (planted.instruction, planted.input)
        else:  # complexity: the instruction was dressed up; the task underneath is the same
            assert clean.instruction in planted.instruction or planted.instruction.endswith(
                clean.instruction[1:])
            assert clean.input == planted.input


def test_the_workspace_keeps_originals_in_artifacts_not_the_store(tmp_path):
    ws = create_demo_workspace(tmp_path / "demo", size=100)
    originals = load_planted_originals(ws)
    assert (ws.artifacts / ORIGINALS_FILE).exists()
    assert set(originals) == set(load_planted_labels(ws)) == set(build_demo(100)["originals"])
    with ws.store.read() as con:
        stored = {r[0] for r in con.execute("SELECT id FROM samples").fetchall()}
    fixed = {Sample(**o).id for sid, o in originals.items() if Sample(**o).id != sid}
    assert fixed and not fixed & stored  # the signals never see a clean original

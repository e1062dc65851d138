"""The `pmi-novel` quality mode: relevance over the response's own tokens, and a penalty for
tokens that repeat earlier n-grams (middo_core/signals/judge_novel.py)."""

from __future__ import annotations

import numpy as np
import pytest

from middo_core.diagnose import diagnose
from middo_core.sample import Sample
from middo_core.signals.judge_novel import marks, novel_frame, novel_payload
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.store.signals import load_signals


def test_marks_find_repeated_and_restated_tokens():
    request = [7, 8, 9, 10, 11]
    response = [1, 2, 3, 4, 5, 1, 2, 3, 4, 8, 9, 10, 11, 6]
    repeated, restated = marks(response, request, n=4)
    assert repeated.tolist() == [False] * 5 + [True] * 4 + [False] * 5
    assert restated.tolist() == [False] * 9 + [True] * 4 + [False]
    assert not marks([1, 2, 3], [1, 2, 3], n=4)[1].any()  # shorter than an n-gram: nothing


def test_the_payload_sums_the_own_tokens_only():
    response, request = [1, 2, 3, 4, 1, 2, 3, 4, 5], [9]
    cond, uncond = np.arange(10, dtype=float), np.full(10, 2.0)  # one more: the end marker
    got = novel_payload(response, request, cond, uncond)
    assert got["n"] == 9 and got["own"] == 5 and got["repeated"] == pytest.approx(4 / 9)
    assert got["cond_own"] == pytest.approx(0 + 1 + 2 + 3 + 8)
    assert got["uncond_own"] == pytest.approx(10.0)
    assert novel_payload(response, request, None, None)["cond_own"] is None


def test_the_frame_scores_a_restating_or_looping_response_lower():
    conditional = [(1.0, -0.1)] * 3
    novel = [  # a clean answer; the request said back; a loop
        {"n": 20, "own": 20, "repeated": 0.0, "restated": 0.0, "cond_own": 20.0,
         "uncond_own": 40.0},
        {"n": 20, "own": 6, "repeated": 0.0, "restated": 0.7, "cond_own": 5.8,
         "uncond_own": 6.0},
        {"n": 60, "own": 15, "repeated": 0.75, "restated": 0.0, "cond_own": 15.0,
         "uncond_own": 30.0},
    ]
    frame = novel_frame(["a", "b", "c"], conditional, novel, [1.5, 1.5, 1.5])
    q = frame["quality"]
    assert q.between(0, 10).all() and q["b"] < q["a"] and q["c"] < q["a"]
    nothing = novel_frame(["d"], [(1.0, -0.1)], [{"n": 4, "own": 0, "repeated": 0.0,
                                                  "restated": 1.0}], [1.0])
    assert nothing.at["d", "quality"] == 0  # a response with no word of its own


def _fill(ws, samples):
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 0, [s.id for s in samples])


CLEAN = [
    Sample(instruction="Give two tips for staying healthy.",
           output="Eat plenty of vegetables every day. Get at least seven hours of sleep each "
                  "night, and walk for half an hour."),
    Sample(instruction="Describe the water cycle in a few sentences.",
           output="Water evaporates from the seas and lakes. The vapour cools and forms clouds. "
                  "Rain and snow bring the water back to the ground and the rivers."),
    Sample(instruction="Explain why the sky is blue.",
           output="Sunlight is scattered by the molecules of the air. Blue light, with its short "
                  "wavelength, is scattered the most, so the sky looks blue."),
]


def _looped(sample: Sample) -> Sample:
    first, *rest = sample.output.split(". ")
    again = rest[-1].rstrip(".") + "."
    return Sample(instruction=sample.instruction, output=" ".join([first + "."] + [again] * 5))


def test_the_diagnosis_scores_looped_responses_below_their_sources(workspace_factory, tiny_model,
                                                                   tiny_model_b):
    """Tiny random models: the loop's repeated tokens, not the model's knowledge, lower it; the
    novel pass's two halves align token for token."""
    from middo_core.models.source import ModelSource
    from middo_core.signals.judge_novel import compute_novel
    from middo_core.signals.passes import LossSettings

    looped = [_looped(s) for s in CLEAN]
    loaded = ModelSource("cpu").loaded(tiny_model_b)
    got = {}
    compute_novel(loaded.model, loaded.tokenizer, LossSettings(), [s.id for s in CLEAN + looped],
                  CLEAN + looped, lambda rows: got.update(zip(rows.ids, rows.payloads, strict=True)))
    for clean, bad in zip(CLEAN, looped, strict=True):
        assert got[clean.id]["cond_own"] is not None and got[clean.id]["repeated"] == 0
        assert got[bad.id]["repeated"] > 0.5 and got[bad.id]["own"] < got[bad.id]["n"] / 2

    ws = workspace_factory("novel", base_model=tiny_model, signals={"quality_mode": "pmi-novel"})
    _fill(ws, CLEAN + looped)
    rep = diagnose(ws, 0, post_model=tiny_model_b, signals=("quality",))
    assert rep.quality["mode"] == "pmi-novel" and "set" in rep.quality["reason"]
    with ws.store.read() as con:
        quality = load_signals(con, 0).set_index("sample_id")["quality"]
    assert quality.between(0, 10).all()
    for clean, bad in zip(CLEAN, looped, strict=True):
        assert quality[bad.id] <= quality[clean.id], (bad.output, quality[bad.id])
    diagnose(ws, 0, post_model=tiny_model_b, signals=("quality",))  # again: from the cache
    with ws.store.read() as con:
        again = load_signals(con, 0).set_index("sample_id")["quality"]
    assert np.allclose(again.loc[quality.index], quality)


def test_the_default_below_7b_is_pmi_novel_and_catches_a_restating_answer(workspace_factory):
    """With the packaged 135M model as the judge (untrained here): the request said back scores
    below each answer. (Loops are not asserted here: under the untrained model they did not
    score lower; under M(0) trained on the data they rank low, docs/EVIDENCE.md.)"""
    from middo_core.signals.quality import SMALL_JUDGE_MODE

    assert SMALL_JUDGE_MODE == "pmi-novel"
    restated = [Sample(instruction=s.instruction,
                       output=f"I can help with that: {s.instruction[0].lower()}"
                              f"{s.instruction[1:].rstrip('.')}. Let me know if you need more.")
                for s in CLEAN]
    ws = workspace_factory("packaged-novel", base_model="smollm2-135m")
    _fill(ws, CLEAN + restated)
    rep = diagnose(ws, 0, signals=("quality",))
    assert rep.quality["mode"] == "pmi-novel" and "135M parameters" in rep.quality["reason"]
    with ws.store.read() as con:
        quality = load_signals(con, 0).set_index("sample_id")["quality"]
    for clean, bad in zip(CLEAN, restated, strict=True):
        assert quality[bad.id] < quality[clean.id], (bad.output, quality[bad.id], quality[clean.id])


def test_a_stopped_novel_pass_keeps_its_finished_blocks(tiny_model_b):
    """The pass hands over its rows a block of samples at a time (the executor checkpoints each),
    so a stop loses at most the block under way; the blocks give the same payloads as one run."""
    from middo_core.models.source import ModelSource
    from middo_core.progress import Cancelled
    from middo_core.signals.judge_novel import compute_novel
    from middo_core.signals.passes import LossSettings

    samples = CLEAN + [_looped(s) for s in CLEAN]
    ids = [s.id for s in samples]
    loaded = ModelSource("cpu").loaded(tiny_model_b)
    whole: dict = {}
    compute_novel(loaded.model, loaded.tokenizer, LossSettings(), ids, samples,
                  lambda rows: whole.update(zip(rows.ids, rows.payloads, strict=True)))
    handed: list[list[str]] = []
    seen: list[tuple[int, int]] = []

    def stop_in_the_second_block(ev):
        seen.append((ev.done, ev.total))
        if handed and ev.done > 2 * 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        compute_novel(loaded.model, loaded.tokenizer, LossSettings(), ids, samples,
                      lambda rows: handed.append(list(rows.ids)), stop_in_the_second_block, block=2)
    assert handed == [ids[:2]]  # the first block, whole; nothing of the one under way
    assert all(total == 2 * len(samples) for _, total in seen)  # one bar over every block
    parts: dict = {}
    compute_novel(loaded.model, loaded.tokenizer, LossSettings(), ids, samples,
                  lambda rows: parts.update(zip(rows.ids, rows.payloads, strict=True)), block=2)
    for sid in ids:
        for key in ("n", "own", "repeated", "restated"):
            assert parts[sid][key] == whole[sid][key]
        for key in ("cond_own", "uncond_own"):
            assert parts[sid][key] == pytest.approx(whole[sid][key], rel=1e-3)

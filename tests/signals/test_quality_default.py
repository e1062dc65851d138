"""The default quality mode: `auto` picks the paper's self-judge for a judge model of the paper's
size and the small-model score below it, and the diagnosis says which and why."""

from __future__ import annotations

import pytest

from middo_core.config import SignalsConfig
from middo_core.diagnose import diagnose
from middo_core.sample import Sample
from middo_core.signals.quality import SMALL_JUDGE_MODE, parameter_count, resolve_quality_mode
from middo_core.store.iterations import get_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.store.signals import load_signals


@pytest.fixture(scope="module")
def eight_b(tmp_path_factory) -> str:
    """A model folder with the shape of LLaMA-3.1-8B: config.json only, no weights."""
    from transformers import LlamaConfig

    folder = tmp_path_factory.mktemp("models") / "llama-8b-shape"
    LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8,
                vocab_size=128256).save_pretrained(folder)
    return str(folder)


def test_auto_is_the_default_and_resolves_by_the_judge_size(tiny_model, eight_b):
    cfg = SignalsConfig()
    assert cfg.quality_mode == "auto"
    assert 8.0e9 < parameter_count(eight_b) < 8.1e9
    mode, reason = resolve_quality_mode(cfg, eight_b)
    assert mode == "logprobs" and "8.0B parameters" in reason and "self-judge" in reason
    mode, reason = resolve_quality_mode(cfg, tiny_model)
    assert mode == SMALL_JUDGE_MODE and "3M parameters" in reason and "logprobs" in reason
    mode, reason = resolve_quality_mode(cfg, "some-org/not-on-this-machine")
    assert mode == SMALL_JUDGE_MODE and "unknown" in reason


def test_a_mode_set_in_middo_yaml_is_kept_whatever_the_judge_size(tiny_model, eight_b):
    for mode in ("logprobs", "generate", "pmi", SMALL_JUDGE_MODE):
        got, reason = resolve_quality_mode(SignalsConfig(quality_mode=mode), tiny_model)
        assert got == mode and "set" in reason
        # a small self-judge is kept, and the reason says it rates near chance and what auto runs
        warned = "near chance" in reason and f"auto would run {SMALL_JUDGE_MODE}" in reason
        assert warned == (mode in ("logprobs", "generate")), reason
    got, reason = resolve_quality_mode(SignalsConfig(quality_mode="logprobs"), eight_b)
    assert got == "logprobs" and "near chance" not in reason


def _fill(ws, samples):
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 0, [s.id for s in samples])


SAMPLES = [Sample(instruction=f"Name a colour you like (number {i}).", output=f"Blue, number {i}.")
           for i in range(8)]


def test_the_diagnosis_reports_the_rule_choice_and_the_paper_judge_is_one_setting_away(
        workspace_factory, tiny_model):
    ws = workspace_factory("auto", base_model=tiny_model)
    _fill(ws, SAMPLES)
    rep = diagnose(ws, 0, signals=("quality",))
    assert rep.quality["mode"] == SMALL_JUDGE_MODE and rep.quality["setting"] == "auto"
    assert "under 7B" in rep.quality["reason"]
    with ws.store.read() as con:
        stored = get_iteration(con, 0)["counts"]["diagnosis"]["quality"]
        frame = load_signals(con, 0)
    assert stored["mode"] == SMALL_JUDGE_MODE and stored["reason"] == rep.quality["reason"]
    assert frame["quality"].between(0, 10).all() and frame["response_clarity"].isna().all()

    judge = workspace_factory("judge", base_model=tiny_model,
                              signals={"quality_mode": "logprobs"})
    _fill(judge, SAMPLES)
    rep = diagnose(judge, 0, signals=("quality",))
    assert rep.quality["mode"] == "logprobs" and "set" in rep.quality["reason"]
    with judge.store.read() as con:
        frame = load_signals(con, 0)
    assert frame["response_clarity"].between(0, 10).all()  # the six ratings of the self-judge


CLEAN = [
    Sample(instruction="What is the capital of France?",
           output="The capital of France is Paris."),
    Sample(instruction="Give two tips for staying healthy.",
           output="Eat plenty of vegetables every day, and get at least seven hours of sleep."),
    Sample(instruction="Translate 'thank you' into Spanish.", output="'Thank you' is 'gracias'."),
    Sample(instruction="Name three primary colours.", output="Red, blue and yellow."),
]


def test_the_default_rates_swapped_and_cut_responses_below_their_sources(workspace_factory):
    """With the packaged 135M model: what a curator calls low quality scores lower."""
    swapped = [Sample(instruction=s.instruction, output=CLEAN[(i + 1) % len(CLEAN)].output)
               for i, s in enumerate(CLEAN)]
    cut = [Sample(instruction=s.instruction, output=s.output[: len(s.output) // 2].rstrip(" ,.'"))
           for s in CLEAN]
    ws = workspace_factory("packaged", base_model="smollm2-135m")
    _fill(ws, CLEAN + swapped + cut)
    rep = diagnose(ws, 0, signals=("quality",))
    assert rep.quality["mode"] == SMALL_JUDGE_MODE and "135M parameters" in rep.quality["reason"]
    with ws.store.read() as con:
        quality = load_signals(con, 0).set_index("sample_id")["quality"]
    for clean, bad in zip(CLEAN * 2, swapped + cut, strict=True):
        assert quality[bad.id] < quality[clean.id], (bad.output, quality[bad.id], quality[clean.id])

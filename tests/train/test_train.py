"""Fine-tuning on a tiny model: the loss falls, the checkpoint loads, prompts are masked,
runs are deterministic, and impossible runs are refused before they start."""

from __future__ import annotations

import json

import pytest

from middo_core.config import TrainConfig
from middo_core.sample import Sample
from middo_core.store import iterations as iter_store
from middo_core.train.presets import PlanError, resolve_plan
from middo_core.train.sft_data import IGNORE_INDEX, encode


def test_training_lowers_loss_and_records_a_loadable_checkpoint(small_workspace):
    from middo_core.models.loader import load_model
    from middo_core.train import train

    ws = small_workspace()
    events = []
    result = train(ws, 0, progress=events.append)
    assert result.steps == 9  # 36 samples, batch 4, one epoch
    first, last = result.losses[0][1], result.losses[-1][1]
    assert last < first - 1.0, result.losses
    # the progress bar saw optimizer steps with a loss and an ETA
    steps = [e for e in events if getattr(e, "step", None)]
    assert steps[-1].done == steps[-1].total == 9
    assert any(e.loss is not None and e.eta_s is not None for e in steps)
    # the checkpoint is M(0): recorded, complete, loadable; no temp or work folders are left
    with ws.store.read() as con:
        record = iter_store.get_iteration(con, 0)
    assert record["model"] == result.checkpoint and record["status"] == "trained"
    model, tokenizer = load_model(result.checkpoint, device="cpu")
    assert tokenizer.pad_token is not None and model.num_parameters() > 0
    folders = sorted(p.name for p in (ws.artifacts / "checkpoints").iterdir())
    assert folders == ["iter_0"]
    meta = json.loads((ws.artifacts / "checkpoints" / "iter_0" / "middo_train.json").read_text())
    assert meta["steps"] == 9 and meta["plan"]["preset"] == "custom"


def test_training_is_deterministic_on_cpu(small_workspace):
    from middo_core.train import train

    a = train(small_workspace("a", {"epochs": 0.25}), 0)
    b = train(small_workspace("b", {"epochs": 0.25}), 0)
    assert a.losses == b.losses and len(a.losses) == 3


def test_prompt_tokens_are_masked(tiny_model):
    from middo_core.models.loader import load_tokenizer

    tok = load_tokenizer(tiny_model)
    sample = Sample(instruction="Name a primary colour.", output="Red is a primary colour.",
                    system="Be brief.", history=[("Hi", "Hello!")])
    for fmt in ("chat", "plain"):
        enc = encode(tok, sample, max_len=512, prompt_format=fmt)
        assert enc.labels[:enc.n_prompt] == [IGNORE_INDEX] * enc.n_prompt
        learned = tok.decode([t for t in enc.labels if t != IGNORE_INDEX])
        assert learned.startswith("Red is a primary colour.")
        assert "Name a primary colour" not in learned and "Hello!" not in learned
        prompt = tok.decode(enc.input_ids[:enc.n_prompt])
        assert "Name a primary colour." in prompt and "Be brief." in prompt
    # a long prompt is cut from the left so the response still gets at least half the window
    long = Sample(instruction="word " * 400, output="The answer.")
    enc = encode(tok, long, max_len=64)
    assert enc.truncated and len(enc.input_ids) == 64
    assert tok.decode([t for t in enc.labels if t != IGNORE_INDEX]).startswith("The answer.")


def test_presets_and_overrides():
    small = resolve_plan(TrainConfig())
    assert (small.preset, small.max_len, small.batch_size) == ("cpu-small", 256, 8)
    paper = resolve_plan(TrainConfig(preset="paper-7b"))
    assert (paper.learning_rate, paper.max_len, paper.scheduler, paper.warmup_ratio) == (2e-5, 4096, "cosine", 0.03)
    assert paper.accumulation(world_size=8) == 1 and paper.accumulation(world_size=1) == 8  # batch 32
    # a field changed in middo.yaml beats the preset; an explicit override beats both
    assert resolve_plan(TrainConfig(preset="paper-7b", learning_rate=1e-5)).learning_rate == 1e-5
    assert resolve_plan(TrainConfig(), {"method": "lora"}).method == "lora"
    with pytest.raises(PlanError, match="unknown training option"):
        resolve_plan(TrainConfig(), {"learning_rat": 1.0})
    with pytest.raises(PlanError, match="unknown training preset"):
        resolve_plan(TrainConfig(), preset="paper-70b")


def test_empty_dataset_is_a_clear_error(workspace_factory, tiny_model):
    from middo_core.train import train
    from middo_core.train.trainer import TrainError

    ws = workspace_factory("empty", base_model=tiny_model)
    with pytest.raises(TrainError, match=r"D\(0\) has no training samples"):
        train(ws, 0)


def test_lora_trains_and_saves_a_merged_plain_model(small_workspace):
    from middo_core.models.loader import load_model
    from middo_core.train import train

    ws = small_workspace(train_overrides={"method": "lora", "epochs": 0.5, "lora_r": 8})
    result = train(ws, 0)
    assert result.plan["method"] == "lora" and result.losses[-1][1] < result.losses[0][1]
    model, _ = load_model(result.checkpoint, device="cpu")
    assert not any("lora" in name for name, _ in model.named_parameters())

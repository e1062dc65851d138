"""Training presets and the resolved plan one training run follows.

A preset fixes the hyperparameters for a setting (the paper's 7B recipe, a laptop CPU); fields of
`train:` in middo.yaml that differ from their defaults override the preset, and explicit
overrides (CLI flags, job arguments) override both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from middo_core.config import TrainConfig


@dataclass(frozen=True)
class TrainPlan:
    preset: str
    method: str = "full"  # full | lora
    learning_rate: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 8  # per device
    grad_accum: int = 1
    effective_batch: int | None = None  # when set, grad_accum = effective / (batch x devices)
    max_len: int = 256
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    bf16: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    num_gpus: int = 0  # 0: every visible GPU (CPU when none)
    seed: int = 0
    gradient_checkpointing: bool = False
    checkpoints_per_epoch: int = 4  # intermediate checkpoints kept for resume (the last one)
    group_by_length: bool = True  # batches of similar length: far less padding on CPU

    def accumulation(self, world_size: int) -> int:
        if not self.effective_batch:
            return self.grad_accum
        return max(1, math.ceil(self.effective_batch / (self.batch_size * max(world_size, 1))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper (Sec. 4.1, LLaMA-Factory): full fine-tuning, lr 2e-5, cosine, warmup 0.03,
    # batch 32, 4,096 tokens, bf16, DeepSpeed ZeRO-2 across GPUs.
    "paper-7b": dict(method="full", learning_rate=2e-5, epochs=1.0, batch_size=4,
                     effective_batch=32, max_len=4096, warmup_ratio=0.03, scheduler="cosine",
                     bf16=True, gradient_checkpointing=True, group_by_length=False),
    # SmolLM2-135M on 2 CPU cores: ~350 samples in one epoch within minutes. 256 tokens hold
    # most instruction/response pairs; batch 8 keeps the optimizer step cheap; a small model
    # takes a higher rate than a 7B one. fp32 weights with bf16 autocast: bf16 weights lose
    # updates this small to rounding.
    "cpu-small": dict(method="full", learning_rate=5e-5, epochs=1.0, batch_size=8, grad_accum=1,
                      max_len=256, warmup_ratio=0.03, scheduler="cosine", bf16=True),
    # "custom": the `train:` fields of middo.yaml as written.
    "custom": {},
}

# TrainConfig field -> TrainPlan field, for the fields both have.
_CONFIG_FIELDS = ("method", "learning_rate", "epochs", "batch_size", "grad_accum", "max_len",
                  "warmup_ratio", "scheduler", "bf16", "lora_r", "num_gpus", "seed")


class PlanError(ValueError):
    pass


def resolve_plan(config: TrainConfig, overrides: dict[str, Any] | None = None,
                 preset: str | None = None) -> TrainPlan:
    """Preset values, then config fields that differ from their defaults, then overrides."""
    name = preset or config.preset
    if name not in PRESETS:
        raise PlanError(f"unknown training preset '{name}' (known: {', '.join(PRESETS)})")
    values: dict[str, Any] = {f: getattr(config, f) for f in _CONFIG_FIELDS}
    if name != "custom":
        defaults = TrainConfig()
        changed = {f: getattr(config, f) for f in _CONFIG_FIELDS
                   if getattr(config, f) != getattr(defaults, f)}
        values.update(PRESETS[name])
        values.update(changed)
    plan = TrainPlan(preset=name, **values)
    known = {f.name for f in fields(TrainPlan)}
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise PlanError(f"unknown training option(s): {', '.join(unknown)}")
    plan = replace(plan, **extra)
    if plan.method not in ("full", "lora"):
        raise PlanError(f"training method must be 'full' or 'lora', got '{plan.method}'")
    if plan.max_len < 16 or plan.batch_size < 1 or plan.learning_rate <= 0 or plan.epochs <= 0:
        raise PlanError("max_len >= 16, batch_size >= 1, learning_rate > 0 and epochs > 0 required")
    return plan

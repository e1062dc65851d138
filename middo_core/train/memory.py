"""Will this training run fit? A rough estimate checked before hours are spent.

Per device: model states (full fine-tuning with AdamW and mixed precision: fp32 weights 4 +
gradients 4 + Adam moments 8 bytes per parameter; DeepSpeed ZeRO-2 keeps bf16 weights 2 bytes and
splits the other 14 across devices; LoRA: frozen bf16 weights plus small adapters) plus
activations (about 34 x hidden bytes per token and layer, or 2 x hidden with gradient
checkpointing plus one layer's worth, after Korthikanti et al. 2022) plus the logits in fp32 with
their gradient. Good to within a factor of ~1.5: enough to refuse what cannot work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from middo_core.train.presets import TrainPlan

GB = 1024**3
HEADROOM = 0.9  # allocator fragmentation, CUDA context, the OS


class InsufficientMemory(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelShape:
    params: int
    hidden: int
    layers: int
    vocab: int


@dataclass(frozen=True)
class MemoryEstimate:
    need_bytes: float
    have_bytes: float | None
    device: str
    detail: dict[str, float]

    @property
    def fits(self) -> bool:
        return self.have_bytes is None or self.need_bytes <= self.have_bytes * HEADROOM

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GB:.1f}" for k, v in self.detail.items())
        have = "unknown" if self.have_bytes is None else f"{self.have_bytes / GB:.1f} GB"
        return f"needs ~{self.need_bytes / GB:.1f} GB per device ({parts} GB); {self.device} has {have}"


def model_shape(path: str) -> ModelShape | None:
    """Parameter count and sizes from config.json alone (weights are built on the meta device)."""
    if not (Path(path) / "config.json").exists():
        return None  # a hub id we cannot read offline: no estimate
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    text = getattr(config, "text_config", None) or config
    return ModelShape(params=params, hidden=int(text.hidden_size), layers=int(text.num_hidden_layers),
                      vocab=int(text.vocab_size))


def estimate(plan: TrainPlan, shape: ModelShape, world_size: int = 1,
             zero2: bool = False) -> dict[str, float]:
    n = shape.params
    if plan.method == "lora":
        # adapters on every linear layer: ~2 x r x hidden per projection, 7 projections per layer
        adapters = 2 * plan.lora_r * shape.hidden * 7 * shape.layers
        states = 2 * n + 16 * adapters
    elif zero2 and world_size > 1:
        states = 2 * n + 14 * n / world_size
    else:
        states = 16 * n
    tokens = plan.batch_size * plan.max_len
    if plan.gradient_checkpointing:
        acts = tokens * shape.hidden * (2 * shape.layers + 34)
    else:
        acts = tokens * shape.hidden * 34 * shape.layers
    logits = tokens * shape.vocab * 10  # bf16 logits, fp32 copy for the loss, its gradient
    return {"model states": float(states), "activations": float(acts), "logits": float(logits)}


def available(device: str) -> tuple[float | None, str]:
    """(free bytes on one device, a name for messages)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info()
        return float(free), f"this GPU ({torch.cuda.get_device_name()})"
    try:
        import psutil

        return float(psutil.virtual_memory().available), "this machine (CPU RAM)"
    except ImportError:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return float(pages), "this machine (CPU RAM)"


def check_memory(plan: TrainPlan, model_path: str, device: str, world_size: int = 1,
                 zero2: bool = False) -> MemoryEstimate | None:
    """Raise InsufficientMemory with advice when the run cannot fit; None when unknown."""
    shape = model_shape(model_path)
    if shape is None:
        return None
    detail = estimate(plan, shape, world_size, zero2)
    have, where = available(device)
    result = MemoryEstimate(need_bytes=sum(detail.values()), have_bytes=have, device=where,
                            detail=detail)
    if not result.fits:
        advice = ("use --method lora or more GPUs" if plan.method == "full"
                  else "lower --max-len or the batch size, or use a GPU with more memory")
        raise InsufficientMemory(
            f"preset {plan.preset} ({plan.method} fine-tuning of {shape.params / 1e9:.2f}B parameters, "
            f"batch {plan.batch_size} x {plan.max_len} tokens) needs ~{result.need_bytes / GB:.0f} GB, "
            f"{where} has {(have or 0) / GB:.0f} GB free: {advice}"
        )
    return result

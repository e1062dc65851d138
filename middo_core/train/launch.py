"""Launching training on several GPUs: torchrun (or accelerate) around the training entry point.

One process per GPU runs `python -m middo_core.train.entry`; with DeepSpeed installed the
optimizer states and gradients are split across GPUs (ZeRO-2, as in the paper).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ENTRY = "middo_core.train.entry"

# "auto" values are filled in by transformers from the TrainingArguments.
ZERO2_CONFIG = {
    "bf16": {"enabled": "auto"},
    "zero_optimization": {
        "stage": 2,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_scatter": True,
        "reduce_bucket_size": 5e8,
        "allgather_bucket_size": 5e8,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
}


def has_deepspeed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def world_size(requested: int) -> int:
    """Processes to launch: `requested` GPUs (0: all visible), 1 on a machine without GPUs."""
    gpus = visible_gpus()
    if gpus == 0:
        return 1
    return gpus if requested <= 0 else min(requested, gpus)


def write_deepspeed_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "deepspeed_zero2.json"
    path.write_text(json.dumps(ZERO2_CONFIG, indent=2), encoding="utf-8")
    return path


def launch_command(workspace: Path, iteration: int, nproc: int, *, run_id: str | None = None,
                   deepspeed_config: Path | None = None, launcher: str = "torchrun",
                   extra: list[str] | None = None, python: str | None = None) -> list[str]:
    """The command that trains M(iteration) with `nproc` processes (one per GPU)."""
    python = python or sys.executable
    args = ["--workspace", str(workspace), "--iteration", str(iteration)]
    if run_id:
        args += ["--run-id", run_id]
    if deepspeed_config is not None:
        args += ["--deepspeed", str(deepspeed_config)]
    args += list(extra or [])
    if nproc <= 1:
        return [python, "-m", ENTRY, *args]
    if launcher == "torchrun":
        return [python, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", "-m", ENTRY, *args]
    if launcher == "accelerate":
        return [python, "-m", "accelerate.commands.launch", "--multi_gpu",
                f"--num_processes={nproc}", "--mixed_precision=bf16", "-m", ENTRY, *args]
    raise ValueError(f"unknown launcher '{launcher}' (use torchrun or accelerate)")

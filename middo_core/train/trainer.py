"""Supervised fine-tuning of the base model on D(i): one checkpoint per iteration, resumable.

As in the paper every iteration starts from the base model, not from M(i-1). Loss is on the
response tokens only. The run writes intermediate checkpoints under
artifacts/checkpoints/iter_{i}.work/ (so a crash resumes from the last one) and the final model
and tokenizer to iter_{i}.tmp, renamed to iter_{i} once complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from middo_core.files import disk_full
from middo_core.progress import Cancelled, Progress, ProgressFn, report
from middo_core.store import iterations as iter_store
from middo_core.store import samples as sample_store
from middo_core.train.presets import TrainPlan, resolve_plan
from middo_core.workspace import Workspace


class TrainError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainProgress(Progress):
    """A training step: `done`/`total` are optimizer steps; loss and ETA for the progress bar."""

    step: int | None = None
    loss: float | None = None
    eta_s: float | None = None


@dataclass
class TrainResult:
    iteration: int
    checkpoint: str
    steps: int
    resumed_from_step: int
    train_loss: float | None
    losses: list[tuple[int, float]]
    samples: int
    tokens: int
    truncated: int
    dropped_empty: int
    wall_s: float
    plan: dict[str, Any] = field(default_factory=dict)
    memory: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checkpoint_dir(ws: Workspace, iteration: int) -> Path:
    return ws.artifacts / "checkpoints" / f"iter_{iteration}"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def train(ws: Workspace, iteration: int, progress: ProgressFn | None = None, resume: bool = True,
          overrides: dict[str, Any] | None = None, preset: str | None = None,
          deepspeed: str | None = None) -> TrainResult:
    """Fine-tune the base model on D(iteration) and record the checkpoint as M(iteration)."""
    from middo_core.models.loader import pick_device, resolve_model_path
    from middo_core.train.launch import has_deepspeed, world_size
    from middo_core.train.memory import check_memory

    plan = resolve_plan(ws.config.train, overrides, preset)
    nproc = int(os.environ.get("WORLD_SIZE", "0")) or world_size(plan.num_gpus)
    if nproc > 1 and not _is_distributed():
        from middo_core.train.distributed import train_distributed

        return train_distributed(ws, iteration, plan, nproc, progress=progress, resume=resume,
                                 preset=preset, overrides=overrides)
    with ws.store.read() as con:
        frame = sample_store.dataset(con, iteration, "train")
    if frame.empty:
        raise TrainError(f"D({iteration}) has no training samples: import data or build D({iteration}) first")
    base = resolve_model_path(ws.config.base_model)
    device = pick_device("auto")
    report(progress, "train: preparing", 0, 1, f"checking memory for {plan.preset} ({plan.method})")
    estimate = check_memory(plan, base, device, nproc, zero2=bool(deepspeed) and has_deepspeed())
    samples = [sample_store.row_to_sample(r) for r in frame.to_dict("records")]
    with _quiet_progress_bars():
        result = _fit(ws, iteration, plan, base, device, samples, list(frame["id"]), progress,
                      resume, deepspeed)
    result.memory = estimate.describe() if estimate else None
    if _rank() == 0:
        with ws.store.write() as con:
            iter_store.upsert_iteration(con, iteration, model=result.checkpoint, status="trained",
                                        base_model=ws.config.base_model)
        (Path(result.checkpoint) / "middo_train.json").write_text(
            json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result


@contextmanager
def _quiet_progress_bars():
    """transformers' own tqdm bars would interleave with the caller's progress display."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _fingerprint(plan: TrainPlan, base: str, ids: list[str]) -> str:
    from middo_core.models.loader import model_fingerprint

    h = hashlib.sha256(json.dumps(plan.to_dict(), sort_keys=True).encode())
    h.update(model_fingerprint(base).encode())
    h.update("\n".join(ids).encode())
    return h.hexdigest()[:16]


def _prepare_work_dir(work: Path, fingerprint: str, resume: bool) -> str | None:
    """The checkpoint to resume from, if it belongs to this very run (same data, plan, model)."""
    marker = work / "middo_run.json"
    if resume and marker.exists() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
        return _last_complete_checkpoint(work)
    if _rank() == 0:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    return None


def _last_complete_checkpoint(work: Path) -> str | None:
    """The newest checkpoint-N with its trainer_state.json (written last): a process killed
    while saving leaves a folder without it, and the previous checkpoint is still there."""
    found = []
    for folder in work.glob("checkpoint-*"):
        if folder.name.split("-")[-1].isdigit():
            found.append((int(folder.name.split("-")[-1]), folder))
    for _, folder in sorted(found, reverse=True):
        if _whole(folder):
            return str(folder)
        if _rank() == 0:  # half-written by a killed process, cut short by a full disk or a copy
            shutil.rmtree(folder, ignore_errors=True)
    return None


def _whole(checkpoint: Path) -> bool:
    """Its trainer_state.json (written last) parses and no weights file is cut short."""
    from middo_core.models.loader import damaged_weights

    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return damaged_weights(checkpoint) is None


def _load_for_training(base: str, plan: TrainPlan):
    import torch
    from transformers import AutoModelForCausalLM

    if plan.method == "full":
        # fp32 weights (the optimizer's copy); bf16 autocast does the matrix work
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    else:
        from peft import LoraConfig, get_peft_model

        model = AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.bfloat16 if plan.bf16 else torch.float32)
        lora = LoraConfig(r=plan.lora_r, lora_alpha=plan.lora_alpha, lora_dropout=0.05,
                          target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        if plan.gradient_checkpointing:
            model.enable_input_require_grads()
    model.config.use_cache = False
    return model


def _fit(ws: Workspace, iteration: int, plan: TrainPlan, base: str, device: str, samples: list,
         ids: list[str], progress: ProgressFn | None, resume: bool,
         deepspeed: str | None) -> TrainResult:
    import math

    from transformers import PrinterCallback, Trainer, TrainingArguments

    from middo_core.models.loader import load_tokenizer
    from middo_core.train.sft_data import PadCollator, build_dataset

    started = time.monotonic()
    tokenizer = load_tokenizer(base)
    dataset, stats = build_dataset(tokenizer, samples, plan.max_len, ws.config.signals.prompt_format)
    if len(dataset) == 0:
        raise TrainError(f"D({iteration}): no sample has a response token within {plan.max_len} tokens")
    final = checkpoint_dir(ws, iteration)
    work = final.with_name(final.name + ".work")
    last = _prepare_work_dir(work, _fingerprint(plan, base, ids), resume)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accum = plan.accumulation(world)
    steps_per_epoch = max(1, math.ceil(math.ceil(len(dataset) / (plan.batch_size * world)) / accum))
    save_steps = max(1, math.ceil(steps_per_epoch / max(plan.checkpoints_per_epoch, 1)))
    args = TrainingArguments(**_compat_args(
        output_dir=str(work), num_train_epochs=plan.epochs, per_device_train_batch_size=plan.batch_size,
        gradient_accumulation_steps=accum, learning_rate=plan.learning_rate,
        lr_scheduler_type=plan.scheduler, warmup_ratio=plan.warmup_ratio, weight_decay=0.0,
        bf16=plan.bf16, logging_steps=1, save_strategy="steps", save_steps=save_steps,
        save_total_limit=1, seed=plan.seed, data_seed=plan.seed, report_to="none",
        disable_tqdm=True, remove_unused_columns=False, use_cpu=device == "cpu",
        dataloader_num_workers=0, activation_checkpointing=plan.gradient_checkpointing,
        group_by_length=plan.group_by_length, deepspeed=deepspeed, optim="adamw_torch",
    ))
    model = _load_for_training(base, plan)
    callback = _ProgressState(progress)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      data_collator=PadCollator(tokenizer.pad_token_id),
                      callbacks=[_make_callback(callback)])
    trainer.remove_callback(PrinterCallback)  # it prints every log line; progress goes to `progress`
    try:
        out = trainer.train(resume_from_checkpoint=last)
    except Exception as exc:
        if isinstance(exc, Cancelled) or not disk_full(exc, work):
            raise
        _last_complete_checkpoint(work)  # drops the checkpoint the disk could not hold
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(work)) from exc
    if _rank() == 0:
        report(progress, "train: saving", 0, 1, f"writing {final}")
        _save_final(trainer, plan, tokenizer, final)
        shutil.rmtree(work, ignore_errors=True)
        steps = int(trainer.state.global_step)
        if progress is not None:  # the last word: 100 %, the final loss, where the model is
            progress(TrainProgress(stage="train", done=steps, total=steps, message=f"saved {final}",
                                   step=steps, loss=callback.loss, eta_s=0.0))
    return TrainResult(
        iteration=iteration, checkpoint=str(final), steps=int(trainer.state.global_step),
        resumed_from_step=callback.start_step, train_loss=float(out.training_loss),
        losses=callback.losses, samples=len(dataset), tokens=stats["tokens"],
        truncated=stats["truncated"], dropped_empty=stats["dropped_empty"],
        wall_s=time.monotonic() - started, plan=plan.to_dict(),
    )


def _compat_args(**kw: Any) -> dict[str, Any]:
    """TrainingArguments spelled for the installed transformers (names moved in v5)."""
    from transformers import TrainingArguments

    known = set(TrainingArguments.__dataclass_fields__)
    if "activation_checkpointing" not in known:
        kw["gradient_checkpointing"] = kw.pop("activation_checkpointing")
    if "train_sampling_strategy" in known:
        kw["train_sampling_strategy"] = "group_by_length" if kw.pop("group_by_length") else "random"
    if "warmup_ratio" not in known:
        kw["warmup_steps"] = kw.pop("warmup_ratio")  # v5: a float below 1 is a ratio
    return kw


def _save_final(trainer, plan: TrainPlan, tokenizer, final: Path) -> None:
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    if plan.method == "lora":
        model = model.merge_and_unload()  # a plain model: every later step loads it as is
    if plan.bf16:
        model = model.to(torch.bfloat16)
    model.config.use_cache = True
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # the intermediate checkpoint stays for a rerun
        if disk_full(exc, final.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final.parent)) from exc
        raise
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)  # readers see the old model or the new one, never half of one
    shutil.rmtree(old, ignore_errors=True)


class _ProgressState:
    """Turns trainer events into progress calls; a Cancelled raised there stops training."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.start_step = 0
        self.losses: list[tuple[int, float]] = []
        self.loss: float | None = None
        self.t0 = time.monotonic()

    def begin(self, state) -> None:
        self.start_step = int(state.global_step)
        self.t0 = time.monotonic()
        self.emit(state, f"resumed from step {self.start_step}" if self.start_step else "started")

    def log(self, state, logs: dict | None) -> None:
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
            self.losses.append((int(state.global_step), self.loss))
            self.emit(state)

    def emit(self, state, message: str = "") -> None:
        if self.progress is None or _rank() != 0:
            return
        step, total = int(state.global_step), int(state.max_steps or 0)
        done_here = step - self.start_step
        eta = None
        if done_here > 0 and total:
            eta = (time.monotonic() - self.t0) / done_here * (total - step)
        self.progress(TrainProgress(stage="train", done=step, total=total, message=message,
                                    step=step, loss=self.loss, eta_s=eta))


def _make_callback(tracker: _ProgressState):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            tracker.begin(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            tracker.log(state, logs)

        def on_step_end(self, args, state, control, **kwargs):
            tracker.emit(state)

    return ProgressCallback()


__all__ = ["TrainError", "TrainProgress", "TrainResult", "checkpoint_dir", "train", "Cancelled"]

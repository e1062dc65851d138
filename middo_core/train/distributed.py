"""Training on several GPUs from one call: launch one process per GPU and relay its progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from middo_core.progress import Cancelled, Progress, ProgressFn
from middo_core.train.presets import TrainPlan
from middo_core.workspace import Workspace

POLL_S = 1.0


def train_distributed(ws: Workspace, iteration: int, plan: TrainPlan, nproc: int,
                      progress: ProgressFn | None = None, resume: bool = True,
                      preset: str | None = None, overrides: dict[str, Any] | None = None):
    from middo_core.models.loader import resolve_model_path
    from middo_core.train.launch import has_deepspeed, launch_command, write_deepspeed_config
    from middo_core.train.memory import check_memory
    from middo_core.train.trainer import TrainError, TrainProgress, TrainResult

    zero2 = has_deepspeed()
    # refuse before starting nproc processes that would each run out of memory
    check_memory(plan, resolve_model_path(ws.config.base_model), "cuda", nproc, zero2=zero2)
    ds_config = write_deepspeed_config(ws.artifact_dir("checkpoints")) if zero2 else None
    tmp = Path(tempfile.mkdtemp(prefix="middo-train-", dir=ws.artifact_dir("checkpoints")))
    progress_file, result_file = tmp / "progress.json", tmp / "result.json"
    extra = ["--progress-file", str(progress_file), "--result-file", str(result_file),
             "--overrides", json.dumps(overrides or {})]
    if preset:
        extra += ["--preset", preset]
    if not resume:
        extra.append("--no-resume")
    cmd = launch_command(ws.root, iteration, nproc, deepspeed_config=ds_config, extra=extra)
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        while proc.poll() is None:
            time.sleep(POLL_S)
            if progress is not None and progress_file.exists():
                try:
                    event = json.loads(progress_file.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # replaced while reading: the next poll gets it
                base = {k: event.get(k) for k in ("stage", "done", "total", "message")}
                base["message"] = base["message"] or ""
                if event.get("step") is not None:
                    progress(TrainProgress(**base, step=event["step"], loss=event.get("loss"),
                                           eta_s=event.get("eta_s")))
                else:
                    progress(Progress(**base))
    except (Cancelled, KeyboardInterrupt):
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        raise
    if proc.returncode != 0 or not result_file.exists():
        raise TrainError(f"distributed training exited with code {proc.returncode}: {' '.join(cmd)}")
    result = TrainResult(**json.loads(result_file.read_text(encoding="utf-8")))
    result.losses = [tuple(x) for x in result.losses]
    return result

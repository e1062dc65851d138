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
                   extra: list[str] | None = None, python: str | None = None,
                   nnodes: int = 1, node_rank: int = 0, master_addr: str | None = None,
                   master_port: int = 29500, hostfile: Path | None = None) -> list[str]:
    """The command that trains M(iteration) with `nproc` processes (one per GPU) on this node.

    Several nodes (nnodes > 1): run the command with node_rank 0..nnodes-1 on each node, all with
    the same master_addr (node 0's address) and port; see multinode_commands."""
    python = python or sys.executable
    args = ["--workspace", str(workspace), "--iteration", str(iteration)]
    if run_id:
        args += ["--run-id", run_id]
    if deepspeed_config is not None:
        args += ["--deepspeed", str(deepspeed_config)]
    args += list(extra or [])
    if nnodes > 1:
        return _multinode(python, args, nproc, launcher, nnodes, node_rank, master_addr,
                          master_port, hostfile)
    if nproc <= 1:
        return [python, "-m", ENTRY, *args]
    if launcher == "torchrun":
        return [python, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", "-m", ENTRY, *args]
    if launcher == "accelerate":
        return [python, "-m", "accelerate.commands.launch", "--multi_gpu",
                f"--num_processes={nproc}", "--mixed_precision=bf16", "-m", ENTRY, *args]
    raise ValueError(f"unknown launcher '{launcher}' (use torchrun or accelerate)")


def _multinode(python: str, args: list[str], nproc: int, launcher: str, nnodes: int,
               node_rank: int, master_addr: str | None, master_port: int,
               hostfile: Path | None) -> list[str]:
    if not master_addr:
        raise ValueError("training on several nodes needs master_addr (node 0's address)")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank must be in 0..{nnodes - 1}, got {node_rank}")
    if launcher == "torchrun":
        return [python, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
                f"--node_rank={node_rank}", f"--nproc_per_node={nproc}",
                f"--master_addr={master_addr}", f"--master_port={master_port}", "-m", ENTRY, *args]
    if launcher == "accelerate":
        return [python, "-m", "accelerate.commands.launch", "--multi_gpu",
                f"--num_machines={nnodes}", f"--machine_rank={node_rank}",
                f"--num_processes={nnodes * nproc}", f"--main_process_ip={master_addr}",
                f"--main_process_port={master_port}", "--mixed_precision=bf16", "-m", ENTRY, *args]
    if launcher == "deepspeed":
        # DeepSpeed's own launcher starts every node from node 0 over ssh (hostfile: one
        # "host slots=N" line per node); it runs only on node 0
        if node_rank != 0:
            raise ValueError("the deepspeed launcher runs on node 0 only (it reaches the others over ssh)")
        cmd = [python, "-m", "deepspeed.launcher.runner", f"--num_nodes={nnodes}",
               f"--num_gpus={nproc}", f"--master_addr={master_addr}", f"--master_port={master_port}"]
        if hostfile is not None:
            cmd.append(f"--hostfile={hostfile}")
        return [*cmd, "--module", ENTRY, *args]
    raise ValueError(f"unknown launcher '{launcher}' (use torchrun, accelerate or deepspeed)")


def multinode_commands(workspace: Path, iteration: int, nnodes: int, gpus_per_node: int,
                       master_addr: str, **kwargs) -> list[list[str]]:
    """One command per node (index = node rank), to be started on every node at about the same
    time. The workspace must be on a file system every node sees at the same path; rank 0 (on
    node 0) writes the checkpoint, the store records and, with run_id, the run's progress.json."""
    return [launch_command(workspace, iteration, gpus_per_node, nnodes=nnodes, node_rank=rank,
                           master_addr=master_addr, **kwargs) for rank in range(nnodes)]

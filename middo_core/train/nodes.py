"""Training across nodes as a background job, so the Studio follows it like a local run.

    run_id, others = start_multinode_train(ws, 0, nnodes=4, gpus_per_node=8, master_addr="10.0.0.1")
    # then run others[k] on node k+1 (ssh, your scheduler, or Ray: see docs/SCALING.md)

The job (kind "train-nodes") runs on node 0 in the usual worker process: it starts node 0's
torchrun (or accelerate) processes with the run id, and rank 0 writes the run's progress.json as a
single-node training does. Cancel works as for local jobs (rank 0 sees the cancel flag; the
worker's process group is signalled after the grace period). The workspace must be on a file
system every node sees at the same path.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace

KIND = "train-nodes"
POLL_S = 1.0


def _commands(ws: Workspace, iteration: int, args: dict[str, Any], run_id: str | None):
    from middo_core.train.launch import has_deepspeed, multinode_commands, write_deepspeed_config

    ds = write_deepspeed_config(ws.artifact_dir("checkpoints")) if has_deepspeed() else None
    extra = ["--preset", args["preset"]] if args.get("preset") else []
    return multinode_commands(ws.root, iteration, int(args["nnodes"]), int(args["gpus_per_node"]),
                              args["master_addr"], master_port=int(args.get("master_port", 29500)),
                              launcher=args.get("launcher", "torchrun"), run_id=run_id,
                              deepspeed_config=ds, extra=extra)


def train_nodes_job(ws: Workspace, run_id: str, iteration: int | None, args: dict[str, Any],
                    progress: ProgressFn) -> dict[str, Any]:
    if iteration is None:
        raise ValueError("a train-nodes job needs an iteration")
    cmd = _commands(ws, iteration, args, run_id)[0]
    # same process group as the worker: a cancel's SIGTERM reaches torchrun and its ranks too
    proc = subprocess.Popen(cmd)
    while proc.poll() is None:
        time.sleep(POLL_S)
    if proc.returncode != 0:
        raise RuntimeError(f"node 0 exited with code {proc.returncode}: {' '.join(cmd)}")
    return {"nnodes": args["nnodes"], "gpus_per_node": args["gpus_per_node"], "command": cmd}



def start_multinode_train(ws: Workspace, iteration: int, nnodes: int, gpus_per_node: int,
                          master_addr: str, master_port: int = 29500, launcher: str = "torchrun",
                          preset: str | None = None) -> tuple[str, list[list[str]]]:
    """Start node 0's share as a background job; returns (run id, the commands for nodes 1..)."""
    from middo_core.jobs import start_job

    args = {"nnodes": nnodes, "gpus_per_node": gpus_per_node, "master_addr": master_addr,
            "master_port": master_port, "launcher": launcher, "preset": preset}
    _commands(ws, iteration, args, None)  # refuse bad settings before a job is recorded
    run_id = start_job(ws, KIND, iteration, args)
    return run_id, _commands(ws, iteration, args, None)[1:]

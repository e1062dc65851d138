"""Executors: samples/s of the loss pass (loss + embeddings) in-process and on a local Ray instance.

    python -m benchmarks.bench_executors [--n 240] [--model smollm2-135m] [--actors 2] [--cpus 2]

Both runs diagnose the same demo workspace (complexity + diversity: the post-model pass with
embeddings, then kNN) from an empty cache. Ray: `ray.init(num_cpus=--cpus)`, then the pass on a
pool of --actors actors (1 CPU each). The Ray overhead per task is measured with a no-op actor
(EchoActor) on the same task rows: (wall with T tasks - wall with 1 task) x actors / (T - 1),
i.e. what one task costs beyond its own compute (scheduling, object transfer, result iteration).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def _workspace(root: Path, n: int, model: str):
    from middo_core.data import create_demo_workspace

    ws = create_demo_workspace(root, size=n)
    ws.config.base_model = model
    ws.save_config()
    return ws


def _local(root: Path, n: int, model: str) -> dict:
    from middo_core.diagnose import diagnose

    ws = _workspace(root / "local", n, model)
    started = time.perf_counter()
    rep = diagnose(ws, 0, signals=("complexity", "diversity"))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "samples": rep.computed["post"], "tokens": rep.tokens["post"]}


def _ray(root: Path, n: int, model: str, actors: int, task_samples: int) -> dict:
    from middo_core.diagnose import diagnose
    from middo_core.executors import make_executor

    ws = _workspace(root / "ray", n, model)
    with make_executor("ray", actors=actors, task_samples=task_samples) as ex:
        started = time.perf_counter()
        rep = diagnose(ws, 0, signals=("complexity", "diversity"), executor=ex)
        wall = time.perf_counter() - started
        run = ex.last_runs[0]
    return {"wall_s": wall, "samples": rep.computed["post"], "tokens": rep.tokens["post"], **run}


def _echo(tasks: int, actors: int) -> float:
    from middo_core.executors import make_executor
    from middo_core.executors.tasks import EchoActor, task_rows

    ex = make_executor("ray", actors=actors)
    rows = [task_rows(t, [], []) for t in range(tasks)]
    started = time.perf_counter()
    for _ in ex._pool(EchoActor, {"shard_dir": None}, rows):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--task-samples", type=int, default=32)
    parser.add_argument("--echo-tasks", type=int, default=64)
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    import ray

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    root = Path(tempfile.mkdtemp(prefix="bench-exec-"))
    try:
        local = _local(root, opts.n, opts.model)
        started = time.perf_counter()
        ray.init(num_cpus=opts.cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
        init_s = time.perf_counter() - started
        remote = _ray(root, opts.n, opts.model, opts.actors, opts.task_samples)
        one = _echo(1, opts.actors)
        many = _echo(opts.echo_tasks, opts.actors)
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_task = (many - one) * opts.actors / max(opts.echo_tasks - 1, 1)
    steady = remote["samples"] / max(remote["compute_s"] / opts.actors, 1e-9)
    print(f"\n{opts.n}-sample demo (train split: {local['samples']} samples, {local['tokens']:,} "
          f"tokens), model {opts.model}, Ray {ray.__version__}, {opts.actors} actors x 1 CPU\n")
    print("| measure | local | ray |")
    print("|---|---:|---:|")
    print(f"| diagnosis wall (loss + embeddings + kNN + write), s | {local['wall_s']:.1f} | "
          f"{remote['wall_s']:.1f} |")
    print(f"| samples/s, end to end | {local['samples'] / local['wall_s']:.1f} | "
          f"{remote['samples'] / remote['wall_s']:.1f} |")
    print(f"| ray.init (local instance), s | | {init_s:.1f} |")
    print(f"| tasks / first result after, s | | {remote['tasks']} / {remote['first_result_s']:.1f} |")
    print(f"| model load per actor, s | | {remote['load_s'] / opts.actors:.1f} |")
    print(f"| samples/s once loaded (compute in actors) | | {steady:.1f} |")
    print(f"| no-op pool, 1 task / {opts.echo_tasks} tasks, s | | {one:.2f} / {many:.2f} |")
    print(f"| Ray overhead per task, ms | | {per_task * 1000:.0f} |")


if __name__ == "__main__":
    main()

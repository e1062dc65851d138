"""The Ray executor: diagnosis passes as Ray Data pipelines over actor pools.

    with make_executor("ray", address="auto", actors=8, gpus_per_actor=1) as ex:
        diagnose(ws, 0, executor=ex)

The samples a work object must compute become tasks (`ray.data.from_items`, cut by the work's
`tasks`), `map_batches` runs them on a pool of `actors` model replicas (middo_core.executors.tasks:
the model is loaded once per actor, then the same `work.run` as in-process), each task writes one Parquet shard under
artifacts/shards/ (its embeddings go straight to the vector cache, artifacts/vectors/<key>/), and
the driver ingests the shards in one transaction. Workers never open the DuckDB file, and load
models with the CPU speed layer's choices the driver settled (models.loader.settled_speedups)
instead of timing the attention paths under their own load. Progress is reported per finished
task; a Cancelled from the progress callback stops the pipeline, and the shards already written
are ingested so a rerun computes only the rest.

`run_tasks` maps plainer work (refinement's LLM calls: middo_core.refine.distributed) over the
same kind of pool: each task is pickled to an actor and its result pickled back to the caller.

`address`: None starts a local Ray instance in this process (or joins the one already started
here); "auto" joins the cluster of this machine (`ray start --head`); "ray://host:10001" or
"host:6379" joins a remote one. On a multi-node cluster every node needs this package installed
and the model reachable under the same name; with `shared_storage` (the default) the workspace's
artifacts/ folder must be on a file system every node sees at the same path, otherwise set
shared_storage=False and the rows (and vectors, as .npy bytes) travel back through Ray's object
store instead, for the driver to write.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from middo_core.executors import shards
from middo_core.executors.base import EXECUTORS, Executor, Sink, add_counters
from middo_core.executors.tasks import CallActor, WorkActor, task_rows
from middo_core.models.loader import settled_speedups
from middo_core.models.source import ModelSource
from middo_core.progress import ProgressFn, report
from middo_core.sample import Sample
from middo_core.store.signals import CacheRows
from middo_core.store.vectors import VectorCache, open_vectors, unpack
from middo_core.workspace import Workspace

FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "MIDDO_CACHE_DIR")


class RayUnavailable(ImportError):
    pass


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailable("the ray executor needs Ray Data: pip install 'middo-studio[ray]'") from exc
    return ray


@EXECUTORS.register
@dataclass
class RayExecutor(Executor):
    name: ClassVar[str] = "ray"
    address: str | None = None  # see the module docstring
    actors: int | None = None  # model replicas per pass (None: as many as the cluster fits)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs (a model per GPU), else 0
    task_samples: int = 256  # samples per task (one shard each)
    num_cpus: int | None = None  # CPUs of a local instance started here (None: all)
    shared_storage: bool = True
    device: str | None = None  # None: the workspace's signals.device
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    _started: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if (self.actors is not None and self.actors < 1) or self.task_samples < 1:
            raise ValueError("ray executor: actors and task_samples must be at least 1")

    # --- the session ------------------------------------------------------------------------

    def connect(self):
        ray = import_ray()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # progress goes through the caller's callback
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            env["TOKENIZERS_PARALLELISM"] = "false"
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"env_vars": env})
            self._started = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        self._size(ray.cluster_resources())
        return ray

    def _size(self, resources: dict[str, float]) -> None:
        """Fill in the 'as the cluster fits' defaults from the cluster's resources."""
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
        if self.gpus_per_actor is None:
            self.gpus_per_actor = 1.0 if gpus else 0.0
        if self.actors is None:
            fit = gpus / self.gpus_per_actor if self.gpus_per_actor else cpus / self.cpus_per_actor
            self.actors = max(1, int(fit))

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.address or "local", "actors": self.actors,
                "gpus_per_actor": self.gpus_per_actor, "task_samples": self.task_samples,
                "runs": self.last_runs}

    # --- the passes -------------------------------------------------------------------------

    def map(self, ws: Workspace, work: Any, ids: list[str], samples: list[Sample],
            source: ModelSource, sink: Sink, progress: ProgressFn | None = None,
            stage: str = "", done_before: int = 0) -> dict[str, float]:
        run = f"{work.namespace}-{work.key}" + (f"-{work.vector_key}" if work.vector_key else "")
        folder = shards.run_dir(ws, run)
        vectors = open_vectors(ws, work.vector_key) if work.vector_key else None
        emit = _emitter(work, sink, vectors)
        done = emit(shards.ingest(ws, folder))  # a stopped run's shards first
        todo = [i for i, sid in enumerate(ids) if sid not in done]
        total = done_before + len(ids)
        counters: dict[str, float] = {}
        if not todo:
            return counters
        report(progress, stage, total - len(todo), total)
        plan = work.tasks([samples[i] for i in todo], source, self.task_samples)
        rows = [task_rows(t, [ids[todo[p]] for p in part], [samples[todo[p]] for p in part])
                for t, part in enumerate(plan)]
        self.connect()  # sizes the pool and resolves the device before the actors are described
        actor_args = {"work": work, "device": self._device(ws), "speedups": settled_speedups(),
                      "vector_dir": str(vectors.folder) if vectors and self.shared_storage else None}
        started = time.perf_counter()
        try:
            for part in self._run(ws, WorkActor, actor_args, rows, folder, progress, stage,
                                  total - len(todo), total, vectors):
                add_counters(counters, {k: v for k, v in part.items()
                                        if k not in ("compute_s", "load_s", "seconds")})
        finally:
            emit(shards.ingest(ws, folder))
            if vectors is not None:
                vectors.compact()  # one shard per task: merged here, once the workers are done
        counters["seconds"] = time.perf_counter() - started
        return counters

    def run_tasks(self, ws: Workspace, work: Any, tasks: list[Any],
                  source: ModelSource | None = None) -> Iterator[Any]:
        """Each task on a pool of actors (middo_core.executors.tasks.CallActor), pickled both
        ways; the results in the order tasks finish."""
        if not tasks:
            return
        self.connect()
        rows = [{"task": t, "payload": pickle.dumps(task)} for t, task in enumerate(tasks)]
        args = {"work": work, "source": ModelSource(self._device(ws)),
                "speedups": settled_speedups()}
        for out in self._pool(CallActor, args, rows):
            yield pickle.loads(out["result"])

    def workers(self) -> int:
        self.connect()  # sizes the pool
        return self.actors or 1

    # --- plumbing ---------------------------------------------------------------------------

    def _pool(self, actor_cls, args: dict, rows: list[dict]):
        """The output rows of `rows` (one task each) run through a pool of `actor_cls`."""
        ray = self.connect()
        remote: dict[str, Any] = {"num_cpus": self.cpus_per_actor}
        if self.gpus_per_actor:
            remote["num_gpus"] = self.gpus_per_actor
        pool = ray.data.ActorPoolStrategy(size=min(self.actors or 1, len(rows)))
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            actor_cls, fn_constructor_kwargs=args, batch_size=1, compute=pool, **remote)
        return ds.iter_rows()

    def _device(self, ws: Workspace) -> str:
        if self.device:
            return self.device
        return ws.config.signals.device if self.gpus_per_actor else "cpu"

    def _run(self, ws: Workspace, actor_cls, actor_args: dict, rows: list[dict], folder: Path,
             progress: ProgressFn | None, stage: str, done: int, total: int,
             vectors: VectorCache | None = None):
        """Run `rows` (one task each) through a pool of `actor_cls`; yield each task's stats.
        Vectors that come back inline are written to `vectors` before the task's rows."""
        started = time.perf_counter()
        args = {**actor_args, "shard_dir": str(folder) if self.shared_storage else None}
        work = actor_args.get("work")
        run = {"actor": type(work).__name__ if work is not None else actor_cls.__name__, "tasks": len(rows), "samples": 0, "compute_s": 0.0,
               "load_s": 0.0, "first_result_s": None}
        self.last_runs.append(run)
        for out in self._pool(actor_cls, args, rows):
            part = json.loads(out["stats"])
            if out.get("vectors") and vectors is not None:
                vectors.put(*unpack(out["vectors"]))
            if out["inline"]:  # no shared file system: the driver writes the worker's shard
                shards.write_shard(folder, int(out["task"]), [tuple(r) for r in json.loads(out["inline"])])
            done += int(out["n"])
            run["samples"] += int(out["n"])
            run["compute_s"] += part.get("compute_s", 0.0)
            run["load_s"] += part.get("load_s", 0.0)
            if run["first_result_s"] is None:
                run["first_result_s"] = round(time.perf_counter() - started, 3)
            run["wall_s"] = round(time.perf_counter() - started, 3)
            report(progress, stage, done, total)
            yield part


def _emitter(work: Any, sink: Sink, vectors: VectorCache | None):
    """Shard rows -> CacheRows for the caller's sink, embeddings read back from `vectors` (None:
    the work computes none); returns the ids it handed over."""

    def emit(rows: list[shards.Row]) -> set[str]:
        got = {sid: p for sig, key, sid, p in rows if sig == work.namespace and key == work.key}
        emb = vectors.get(got) if vectors is not None and got else {}
        ids = [sid for sid in got if vectors is None or sid in emb]
        if ids:
            sink(CacheRows(ids, [got[i] for i in ids],
                           np.stack([emb[i] for i in ids]) if vectors is not None else None))
        return set(ids)

    return emit

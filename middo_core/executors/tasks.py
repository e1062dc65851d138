"""Distributed tasks: one task row per slice of samples, and the actor class that runs any work.

The actors are plain classes (Ray Data builds an actor pool from them): `__init__` loads what the
work needs once (`work.load`), `__call__` runs whole tasks with `work.run`, the same code as
in-process, and writes one Parquet shard per task (and, for embeddings, one vector-cache shard
first, so a loss row never lands without its vector). They never open the store. Without shared
storage both travel back in the output row instead: the rows as JSON, the vectors as .npy bytes.
`CallActor` is the plainer one behind `Executor.run_tasks`: pickled task in, pickled result out.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import numpy as np

from middo_core.executors.shards import Row, write_shard
from middo_core.sample import Sample


def task_rows(task: int, ids: list[str], samples: list[Sample]) -> dict[str, Any]:
    """One row of the Ray dataset: a task's ids and samples as JSON text (Arrow-friendly)."""
    return {"task": task, "ids": json.dumps(ids),
            "samples": json.dumps([s.model_dump(mode="json") for s in samples])}


def _unpack(batch: dict[str, Any], i: int) -> tuple[int, list[str], list[Sample]]:
    ids = json.loads(str(batch["ids"][i]))
    samples = [Sample(**d) for d in json.loads(str(batch["samples"][i]))]
    return int(batch["task"][i]), ids, samples


class _TaskActor:
    """Runs tasks; returns one summary row per task (the rows go to a shard, or inline)."""

    def __init__(self, shard_dir: str | None, vector_dir: str | None = None) -> None:
        self.shard_dir = shard_dir
        self.vector_dir = vector_dir
        self.load_s = 0.0

    def run_task(self, ids: list[str], samples: list[Sample]) -> tuple[list[Row], dict]:
        raise NotImplementedError

    def take_vectors(self) -> tuple[list[str], np.ndarray] | None:
        """The embeddings of the task just run, if it computed any."""
        return None

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from middo_core.store.vectors import VectorCache, pack

        out: dict[str, list] = {"task": [], "n": [], "stats": [], "inline": [], "vectors": []}
        for i in range(len(batch["task"])):
            task, ids, samples = _unpack(batch, i)
            started = time.perf_counter()
            rows, stats = self.run_task(ids, samples)
            vectors = self.take_vectors()
            stats["compute_s"] = time.perf_counter() - started
            stats["load_s"], self.load_s = self.load_s, 0.0  # reported once per actor
            packed = b""
            if vectors is not None and self.vector_dir:
                VectorCache(self.vector_dir).put(*vectors)  # before the loss rows' shard
            elif vectors is not None:
                packed = pack(*vectors)
            if self.shard_dir:
                write_shard(self.shard_dir, task, rows)
            out["task"].append(task)
            out["n"].append(len(ids))
            out["stats"].append(json.dumps(stats))
            out["inline"].append("" if self.shard_dir else json.dumps(rows))
            out["vectors"].append(packed)
        return out


class WorkActor(_TaskActor):
    """Any work object (middo_core.executors.base), its model loaded once per actor."""

    def __init__(self, work, device: str, speedups, shard_dir: str | None,
                 vector_dir: str | None = None) -> None:
        from middo_core.models.loader import follow_speedups
        from middo_core.models.source import ModelSource

        super().__init__(shard_dir, vector_dir)
        started = time.perf_counter()
        follow_speedups(speedups)  # the driver's choices, never this actor's own timing
        self.work = work
        self.model = work.load(ModelSource(device))
        self._vectors: tuple[list[str], list[np.ndarray]] = ([], [])
        self.load_s = time.perf_counter() - started

    def run_task(self, ids: list[str], samples: list[Sample]) -> tuple[list[Row], dict]:
        rows: list[Row] = []
        self._vectors = ([], [])

        def collect(part) -> None:
            rows.extend((self.work.namespace, self.work.key, sid, p) for sid, p in part.cache_rows())
            if part.vectors is not None:
                self._vectors[0].extend(part.ids)
                self._vectors[1].append(part.vectors)

        stats = self.work.run(self.model, ids, samples, collect)
        return rows, dict(stats)

    def take_vectors(self) -> tuple[list[str], np.ndarray] | None:
        ids, parts = self._vectors
        self._vectors = ([], [])
        return (ids, np.concatenate(parts)) if ids else None


class CallActor:
    """Any task work (`Executor.run_tasks`): `work.load` once per actor, `work.run_task` per task."""

    def __init__(self, work, source, speedups) -> None:
        from middo_core.models.loader import follow_speedups

        follow_speedups(speedups)  # a model loaded here (a local LLM) runs as the driver's would
        self.work = work
        self.state = work.load(source)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {"task": [], "result": []}
        for i in range(len(batch["task"])):
            result = self.work.run_task(self.state, pickle.loads(batch["payload"][i]))
            out["task"].append(int(batch["task"][i]))
            out["result"].append(pickle.dumps(result))
        return out


class EchoActor(_TaskActor):
    """No model, no work: measures what the distribution itself costs per task (benchmarks)."""

    def __init__(self, shard_dir: str | None = None) -> None:
        super().__init__(shard_dir)

    def run_task(self, ids: list[str], samples: list[Sample]) -> tuple[list[Row], dict]:
        return [], {}

"""Distributed tasks: how work is cut into tasks, and the actor classes that run them.

The actors are plain classes (Ray Data builds an actor pool from them): `__init__` loads the model
once, `__call__` runs whole tasks with the shared functions of middo_core.executors.work and
writes one Parquet shard per task (and, for embeddings, one vector-cache shard first, so a loss
row never lands without its vector). They never open the store. Without shared storage both
travel back in the output row instead: the rows as JSON, the vectors as .npy bytes.

Loss tasks are cut along the batches the in-process pass would form (longest first, the same
padded-token budget), so every sample meets the same batch shape on a worker as in-process and
the two paths give the same numbers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from middo_core.executors.shards import Row, write_shard
from middo_core.executors.work import LOSS, QUALITY, compute_losses, judge_rows
from middo_core.sample import Sample

LENGTH_CHUNK = 4096  # samples tokenized at a time while planning (bounds the driver's memory)


class _Length:
    """Stands in for an encoded sample in plan_batches, which only reads len(ids)."""

    __slots__ = ("ids",)

    def __init__(self, n: int) -> None:
        self.ids = range(n)


def plan_loss_tasks(samples: list[Sample], tokenizer, signal, task_samples: int) -> list[list[int]]:
    """Sample positions per task: whole in-process batches, about `task_samples` per task."""
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import plan_batches

    lengths: list[int] = []
    for start in range(0, len(samples), LENGTH_CHUNK):
        part = encode_all(samples[start:start + LENGTH_CHUNK], tokenizer, signal.prompt_format,
                          signal.max_len)
        lengths += [len(e.ids) for e in part]
    tasks: list[list[int]] = []
    current: list[int] = []
    for batch in plan_batches([_Length(n) for n in lengths], signal.batch_tokens):
        current += batch
        if len(current) >= task_samples:
            tasks.append(current)
            current = []
    if current:
        tasks.append(current)
    return tasks


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


class LossActor(_TaskActor):
    """Loss (and embeddings) under one model, loaded once per actor."""

    def __init__(self, model_name: str, device: str, signal: dict, keys: tuple[str, str],
                 with_embeddings: bool, shard_dir: str | None,
                 vector_dir: str | None = None) -> None:
        from middo_core.signals.complexity import ComplexitySignal, ModelSource

        super().__init__(shard_dir, vector_dir)
        started = time.perf_counter()
        self.signal = ComplexitySignal(**signal)
        source = ModelSource(device)
        self.model = source.model(model_name)
        self.tokenizer = source.tokenizer(model_name)
        self.keys, self.with_embeddings = tuple(keys), with_embeddings
        self._vectors: tuple[list[str], list[np.ndarray]] = ([], [])
        self.load_s = time.perf_counter() - started

    def run_task(self, ids: list[str], samples: list[Sample]) -> tuple[list[Row], dict]:
        rows: list[Row] = []
        self._vectors = ([], [])

        def collect(part) -> None:
            rows.extend((LOSS, self.keys[0], sid, p) for sid, p in part.cache_rows())
            matrix = part.matrix()
            if matrix is not None:
                self._vectors[0].extend(part.ids)
                self._vectors[1].append(matrix)

        stats = compute_losses(self.model, self.tokenizer, self.signal, ids, samples,
                               self.with_embeddings, collect)
        return rows, asdict(stats)

    def take_vectors(self) -> tuple[list[str], np.ndarray] | None:
        ids, parts = self._vectors
        self._vectors = ([], [])
        return (ids, np.concatenate(parts)) if ids else None


class JudgeActor(_TaskActor):
    """The self-judge (transformers, or a vLLM engine on a GPU worker), loaded once per actor."""

    def __init__(self, judge_model: str, device: str, signal: dict, key: str,
                 shard_dir: str | None) -> None:
        from middo_core.signals.complexity import ModelSource
        from middo_core.signals.quality import QualitySignal

        super().__init__(shard_dir)
        started = time.perf_counter()
        self.signal = QualitySignal(**signal)
        self.key = key
        source = ModelSource(device)
        self.tokenizer = source.tokenizer(judge_model)
        self.model = None
        if self.signal.backend == "transformers":
            self.model = source.model(judge_model)
        elif self.signal.backend == "vllm" and not self.signal.vllm_model:
            from middo_core.models.loader import resolve_model_path

            # the engine lives in this actor for its lifetime (one per model)
            self.signal = self.signal.model_copy(update={"vllm_model": resolve_model_path(judge_model)})
        self.load_s = time.perf_counter() - started

    def run_task(self, ids: list[str], samples: list[Sample]) -> tuple[list[Row], dict]:
        rows, stats = judge_rows(self.signal, ids, samples, self.model, self.tokenizer)
        return [(QUALITY, self.key, sid, p) for sid, p in rows], asdict(stats)


class EchoActor(_TaskActor):
    """No model, no work: measures what the distribution itself costs per task (benchmarks)."""

    def __init__(self, shard_dir: str | None = None) -> None:
        super().__init__(shard_dir)

    def run_task(self, ids: list[str], samples: list[Sample]) -> tuple[list[Row], dict]:
        return [], {}

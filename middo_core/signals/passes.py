"""The model passes signals share, as work any executor maps over shards.

A work object is small and picklable (it travels to Ray actors): `load(source)` makes what `run`
needs once per process, `run(model, ids, samples, emit, progress)` computes rows (cache payloads,
and embeddings) and hands them to `emit` as they finish, `tasks(...)` cuts samples into tasks the
way an in-process run would batch them. `namespace`/`key` name its rows in the signal cache and
`vector_key` its embeddings in the vector cache. Two kinds: `LossWork` (the loss pass, with the
embeddings as a by-product) and `SignalWork` (a signal's own `compute`). Neither opens the store.

`loss_pass` is the cache-aware entry: what the cache holds is read, the rest is handed to a
`run_work` callable (the diagnosis binds it to its executor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from middo_core.models.source import ModelSource
from middo_core.progress import ProgressFn, report
from middo_core.sample import Sample
from middo_core.signals.base import Signal, cache_key
from middo_core.signals.forward import PassOutput
from middo_core.store.signals import CacheRows
from middo_core.workspace import Workspace

LOSS = "loss"  # signal_cache namespace
EMBEDDING = "embedding"  # names the embedding key (a vector cache folder)
POOLING = "mean-last-hidden-instruction-input"
LENGTH_CHUNK = 4096  # samples tokenized at a time while planning tasks (bounds the driver's memory)

RunWork = Callable[[Any, list[str], list[Sample], Callable[[CacheRows], None]], dict[str, float]]


class LossSettings(BaseModel):
    """How the loss pass reads samples: prompt format, truncation, batch size in tokens."""

    model_config = ConfigDict(extra="ignore")
    prompt_format: Literal["chat", "plain"] = "chat"
    max_len: int = Field(1024, gt=8)
    batch_tokens: int = Field(4096, gt=0)  # padded tokens per forward call
    chunk_batches: int = Field(4, gt=0)  # batches between cache checkpoints

    @classmethod
    def from_config(cls, cfg) -> LossSettings:
        return cls(prompt_format=cfg.prompt_format, max_len=cfg.max_len,
                   batch_tokens=cfg.batch_size * 512)

    def keys(self, fingerprint: str, tokenizer) -> tuple[str, str]:
        """(loss cache key, embedding cache key) under a model with this fingerprint."""
        from middo_core.signals.encode import format_hash

        fmt = format_hash(tokenizer, self.prompt_format)
        base = (fingerprint, self.prompt_format, fmt, self.max_len)
        return cache_key(LOSS, *base), cache_key(EMBEDDING, *base, POOLING)


@dataclass
class PassResult:
    loss: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {loss, n, truncated, empty}
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    computed: int = 0  # samples run through the model in this call (cache misses)
    stats: dict[str, float] = field(default_factory=dict)  # summed PassStats fields
    fingerprint: str = ""
    embedding_key: str = ""  # the vector cache key of these embeddings
    ids_of: dict[str, str] = field(default_factory=dict)  # sample id -> the id the pass read it
    # under (a response-only pass reads each response as a sample of its own)
    _matrix: tuple[tuple[str, ...], np.ndarray] | None = field(default=None, repr=False)

    def matrix(self, ids: list[str]) -> np.ndarray:
        """The embeddings of `ids` as one (n, dim) matrix, stacked once."""
        if self._matrix is None or self._matrix[0] != tuple(ids):
            self._matrix = (tuple(ids), np.stack([self.embedding[i] for i in ids]))
        return self._matrix[1]


# --- the loss pass ----------------------------------------------------------------------------


def loss_rows(chunk: PassOutput, encoded: list, ids: list[str], with_embeddings: bool) -> CacheRows:
    """The cache payloads (and embeddings) of one finished chunk of the forward pass."""
    out = CacheRows()
    vectors = []
    for j, pos in enumerate(chunk.index):
        enc = encoded[pos]
        out.ids.append(ids[pos])
        out.payloads.append({"loss": finite(chunk.loss[j]), "n": chunk.n_response[j],
                             "truncated": enc.truncated, "empty": enc.empty_response,
                             "tokens": len(enc.ids), "last_nll": finite(chunk.last_nll[j])})
        if with_embeddings:
            vectors.append(chunk.embedding[j])
    if vectors:
        out.vectors = np.stack(vectors).astype("<f4", copy=False)
    return out


def compute_losses(model, tokenizer, settings: LossSettings, ids: list[str], samples: list[Sample],
                   with_embeddings: bool, on_rows: Callable[[CacheRows], None],
                   progress: ProgressFn | None = None, stage: str = "loss"):
    """Encode `samples` and run the loss pass; rows go to on_rows every `settings.chunk_batches`
    batches, also when the pass stops early. Returns the pass's PassStats."""
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import run_pass

    encoded = encode_all(samples, tokenizer, settings.prompt_format, settings.max_len)
    return run_pass(model, encoded, want_loss=True, want_embedding=with_embeddings,
                    batch_tokens=settings.batch_tokens, progress=progress, stage=stage,
                    on_chunk=lambda chunk: on_rows(loss_rows(chunk, encoded, ids, with_embeddings)),
                    chunk_batches=settings.chunk_batches)


class _Length:
    """Stands in for an encoded sample in plan_batches, which only reads len(ids)."""

    __slots__ = ("ids",)

    def __init__(self, n: int) -> None:
        self.ids = range(n)


def plan_loss_tasks(samples: list[Sample], tokenizer, settings, task_samples: int) -> list[list[int]]:
    """Sample positions per task: whole in-process batches, about `task_samples` per task, so a
    sample meets the same batch shape on a worker as in-process (the same numbers)."""
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import plan_batches

    lengths: list[int] = []
    for start in range(0, len(samples), LENGTH_CHUNK):
        part = encode_all(samples[start:start + LENGTH_CHUNK], tokenizer, settings.prompt_format,
                          settings.max_len)
        lengths += [len(e.ids) for e in part]
    tasks: list[list[int]] = []
    current: list[int] = []
    for batch in plan_batches([_Length(n) for n in lengths], settings.batch_tokens):
        current += batch
        if len(current) >= task_samples:
            tasks.append(current)
            current = []
    if current:
        tasks.append(current)
    return tasks


@dataclass
class LossWork:
    """Loss (and embeddings) of samples under one model."""

    settings: LossSettings
    model_name: str
    key: str
    vector_key: str | None = None  # None: no embeddings
    namespace: str = LOSS

    def load(self, source: ModelSource):
        return source.loaded(self.model_name)

    def tasks(self, samples: list[Sample], source: ModelSource, size: int) -> list[list[int]]:
        return plan_loss_tasks(samples, source.tokenizer(self.model_name), self.settings, size)

    def run(self, model, ids: list[str], samples: list[Sample], emit: Callable[[CacheRows], None],
            progress: ProgressFn | None = None) -> dict[str, float]:
        stats = compute_losses(model.model, model.tokenizer, self.settings, ids, samples,
                               self.vector_key is not None, emit, progress=progress)
        return asdict(stats)


def response_only(samples: dict[str, Sample]) -> tuple[dict[str, Sample], dict[str, str]]:
    """Each response after an empty user turn, as a sample of its own; and sample id -> its id."""
    from middo_core.signals.judge_pmi import unconditioned

    bare = {sid: unconditioned(s) for sid, s in samples.items()}
    return {b.id: b for b in bare.values()}, {sid: b.id for sid, b in bare.items()}


def loss_pass(ws: Workspace, settings: LossSettings, model_name: str, samples: dict[str, Sample],
              source: ModelSource, run_work: RunWork, with_embeddings: bool = False,
              need_last_nll: bool = False) -> PassResult:
    """Loss (and embeddings) of every sample under one model, from the cache where possible; the
    rest is computed by `run_work(work, ids, samples, sink)`. Every value is cached by (model
    fingerprint, prompt format, max_len): a new checkpoint never reuses a stale one.
    need_last_nll: a cached payload from before it carried `last_nll` counts as missing."""
    from middo_core.models.loader import model_fingerprint
    from middo_core.store.signals import get_cached
    from middo_core.store.vectors import open_vectors

    ids = list(samples)
    fingerprint = model_fingerprint(model_name)
    loss_key, emb_key = settings.keys(fingerprint, source.tokenizer(model_name))
    out = PassResult(fingerprint=fingerprint, embedding_key=emb_key)
    vectors = open_vectors(ws, emb_key)  # also moves an older workspace's embedding rows out
    with ws.store.read() as con:
        out.loss = get_cached(con, LOSS, loss_key, ids)
    if with_embeddings:
        out.embedding = vectors.get(ids)
    todo = [i for i in ids if i not in out.loss or (with_embeddings and i not in out.embedding)
            or (need_last_nll and "last_nll" not in out.loss[i])]
    if not todo:
        return out

    def sink(rows: CacheRows) -> None:
        out.loss.update(zip(rows.ids, rows.payloads, strict=True))
        if rows.vectors is not None:
            out.embedding.update(zip(rows.ids, rows.vectors, strict=True))

    work = LossWork(settings, model_name, loss_key, emb_key if with_embeddings else None)
    out.stats = run_work(work, todo, [samples[i] for i in todo], sink)
    out.computed = int(out.stats.get("samples", 0))
    return out


# --- a signal's own pass ------------------------------------------------------------------------


@dataclass
class SignalWork:
    """A signal's own `compute` over samples, `signal.chunk_size()` at a time."""

    signal: Signal
    model_name: str | None
    key: str
    vector_key: str | None = None

    @property
    def namespace(self) -> str:
        return self.signal.name

    def __getstate__(self) -> dict:
        # run settings (an LLM client) stay here: only the parameters travel
        return {**self.__dict__, "signal": type(self.signal)(**self.signal.model_dump())}

    def load(self, source: ModelSource):
        return self.signal.load(source, self.model_name) if self.model_name else None

    def tasks(self, samples: list[Sample], source: ModelSource, size: int) -> list[list[int]]:
        chunk = self.signal.chunk_size()  # the in-process chunks: a sample meets the same batch
        return [list(range(s, min(s + chunk, len(samples)))) for s in range(0, len(samples), chunk)]

    def run(self, model, ids: list[str], samples: list[Sample], emit: Callable[[CacheRows], None],
            progress: ProgressFn | None = None) -> dict[str, float]:
        stats: dict[str, float] = {}
        chunk, total = self.signal.chunk_size(), len(ids)
        for start in range(0, total, chunk):
            part_ids, part = ids[start:start + chunk], samples[start:start + chunk]

            def inner(ev, start=start, size=len(part)):
                report(progress, ev.stage, start + int(size * ev.done / max(ev.total, 1)), total)

            frame = self.signal.compute(part, model, progress=inner if progress else None)
            emit(CacheRows(part_ids, [{c: finite(frame.at[sid, c]) for c in self.signal.columns}
                                      for sid in part_ids]))
            for name, value in self.signal.batch_stats().items():
                stats[name] = stats.get(name, 0) + value
        return stats


def finite(x) -> float | None:
    """A float, or None for None, NaN and infinities (what the JSON payloads hold)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None

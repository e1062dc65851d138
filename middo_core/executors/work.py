"""The units of work every executor runs: the same functions in-process and inside Ray actors.

A loss task turns samples into cache rows (loss payloads and, when asked, embeddings) through the
shared forward pass; a judge task turns samples into the six ratings and quality. Neither opens the
store: the caller decides where rows go (a transaction in-process, a Parquet shard on a worker;
embeddings to the vector cache, middo_core.store.vectors, either way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from middo_core.progress import ProgressFn
from middo_core.sample import Sample
from middo_core.signals.forward import PassOutput, PassStats

LOSS = "loss"  # signal_cache namespaces (the same as middo_core.signals.complexity)
EMBEDDING = "embedding"  # names the embedding cache key; the vectors live in the vector cache
QUALITY = "quality"


@dataclass
class LossRows:
    """Loss payloads (and embeddings) of some samples, ready for the signal cache."""

    ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)  # empty when not asked for

    def cache_rows(self) -> list[tuple[str, dict]]:
        """The loss rows in the signal cache's (sample id, payload) shape."""
        return list(zip(self.ids, self.payloads, strict=True))

    def matrix(self) -> np.ndarray | None:
        """The embeddings as one (n, dim) float32 matrix for the vector cache; None without."""
        if not self.embeddings:
            return None
        return np.stack(self.embeddings).astype("<f4", copy=False)


def loss_rows(chunk: PassOutput, encoded: list, ids: list[str], with_embeddings: bool) -> LossRows:
    """The cache payloads of one finished chunk of the forward pass."""
    out = LossRows()
    for j, pos in enumerate(chunk.index):
        enc = encoded[pos]
        out.ids.append(ids[pos])
        out.payloads.append({"loss": finite(chunk.loss[j]), "n": chunk.n_response[j],
                             "truncated": enc.truncated, "empty": enc.empty_response,
                             "tokens": len(enc.ids), "last_nll": finite(chunk.last_nll[j])})
        if with_embeddings:
            out.embeddings.append(chunk.embedding[j])
    return out


def compute_losses(model, tokenizer, signal, ids: list[str], samples: list[Sample],
                   with_embeddings: bool, on_rows: Callable[[LossRows], None],
                   progress: ProgressFn | None = None, stage: str = "loss") -> PassStats:
    """Encode `samples` and run the loss pass (signal: a ComplexitySignal); rows go to on_rows
    every `signal.chunk_batches` batches, also when the pass stops early."""
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import run_pass

    encoded = encode_all(samples, tokenizer, signal.prompt_format, signal.max_len)
    return run_pass(model, encoded, want_loss=True, want_embedding=with_embeddings,
                    batch_tokens=signal.batch_tokens, progress=progress, stage=stage,
                    on_chunk=lambda chunk: on_rows(loss_rows(chunk, encoded, ids, with_embeddings)),
                    chunk_batches=signal.chunk_batches)


@dataclass
class JudgeStats:
    tokens: int = 0
    forward_calls: int = 0
    unparseable: int = 0

    def add(self, other: JudgeStats) -> None:
        self.tokens += other.tokens
        self.forward_calls += other.forward_calls
        self.unparseable += other.unparseable


def judge_rows(signal, ids: list[str], samples: list[Sample], model, tokenizer,
               progress: ProgressFn | None = None) -> tuple[list[tuple[str, dict]], JudgeStats]:
    """The six ratings and quality of `samples` (signal: a QualitySignal), as cache rows."""
    from middo_core.store.signals import QUALITY_COLUMNS

    frame = signal.compute(samples, model, tokenizer, progress=progress)
    rows = [(sid, {c: finite(frame.at[sid, c]) for c in QUALITY_COLUMNS}) for sid in ids]
    rep = signal.report
    stats = JudgeStats() if rep is None else JudgeStats(rep.tokens_fed, rep.forward_calls,
                                                         rep.unparseable)
    return rows, stats


def finite(x) -> float | None:
    """A float, or None for None, NaN and infinities (what the JSON payloads hold)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def add_stats(total: PassStats, part: PassStats) -> None:
    for name in ("samples", "batches", "tokens", "padded_tokens", "response_tokens", "seconds"):
        setattr(total, name, getattr(total, name) + getattr(part, name))

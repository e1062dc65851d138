"""Complexity ("loss patterns"): mean NLL of the response tokens given the prompt.

L_pre comes from the base model and L_post from the model fine-tuned on the dataset version; a
sample is hard when both are high. The pass over the post model also yields the embeddings the
diversity signal needs (see forward.py), so that model reads each sample once.
Every computed value is cached by (model fingerprint, prompt format, max_len): losses in the
store's signal cache, embeddings in the vector cache beside it (middo_core.store.vectors). A rerun
with the same models computes nothing, a new checkpoint never reuses a stale value, and finished
batches are written as they complete so an interrupted run resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from middo_core.progress import ProgressFn
from middo_core.sample import Sample
from middo_core.signals.base import SIGNALS, Signal, cache_key
from middo_core.signals.forward import PassStats
from middo_core.workspace import Workspace

if TYPE_CHECKING:
    from middo_core.executors.base import Executor
    from middo_core.executors.work import LossRows

LOSS = "loss"  # signal_cache namespace
EMBEDDING = "embedding"  # names the embedding key (a vector cache folder)
POOLING = "mean-last-hidden-instruction-input"


@dataclass
class ModelPassResult:
    loss: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {loss, n, truncated, empty}
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    computed: int = 0  # samples run through the model in this call (cache misses)
    stats: PassStats = field(default_factory=PassStats)
    fingerprint: str = ""
    embedding_key: str = ""  # the vector cache key of these embeddings


class ModelSource:
    """Hands out a tokenizer or a model by name, keeping at most one model loaded at a time."""

    def __init__(self, device: str = "auto",
                 loader: Callable[[str, str], tuple[Any, Any]] | None = None) -> None:
        self.device = device
        self._loader = loader
        self._name: str | None = None
        self._model = None
        self._tokenizers: dict[str, Any] = {}
        self.loads = 0

    def tokenizer(self, name: str):
        if name not in self._tokenizers:
            from middo_core.models.loader import load_tokenizer

            self._tokenizers[name] = load_tokenizer(name)
        return self._tokenizers[name]

    def model(self, name: str):
        if self._name != name:
            self.release()
            if self._loader is not None:
                self._model, tok = self._loader(name, self.device)
            else:
                from middo_core.models.loader import load_model

                self._model, tok = load_model(name, self.device)
            self._tokenizers.setdefault(name, tok)
            self._name = name
            self.loads += 1
        return self._model

    def release(self) -> None:
        self._model, self._name = None, None
        import gc

        gc.collect()


@SIGNALS.register
class ComplexitySignal(Signal):
    name: Literal["complexity"] = "complexity"
    prompt_format: Literal["chat", "plain"] = "chat"
    max_len: int = Field(1024, gt=8)
    batch_tokens: int = Field(4096, gt=0)  # padded tokens per forward call
    chunk_batches: int = Field(4, gt=0)  # batches between cache checkpoints

    def keys(self, fingerprint: str, tokenizer) -> tuple[str, str]:
        from middo_core.signals.encode import format_hash

        fmt = format_hash(tokenizer, self.prompt_format)
        base = (fingerprint, self.prompt_format, fmt, self.max_len)
        return cache_key(LOSS, *base), cache_key(EMBEDDING, *base, POOLING)

    def run(self, ws: Workspace, model_name: str, samples: dict[str, Sample], source: ModelSource,
            with_embeddings: bool = False, progress: ProgressFn | None = None,
            stage: str = "loss", executor: Executor | None = None,
            need_last_nll: bool = False) -> ModelPassResult:
        """Loss (and embeddings) of every sample under one model, from the cache where possible;
        the rest is computed by `executor` (default: in this process). need_last_nll: a cached
        payload from before it carried `last_nll` counts as missing."""
        from middo_core.models.loader import model_fingerprint
        from middo_core.store.signals import get_cached
        from middo_core.store.vectors import open_vectors

        ids = list(samples)
        fingerprint = model_fingerprint(model_name)
        tokenizer = source.tokenizer(model_name)
        loss_key, emb_key = self.keys(fingerprint, tokenizer)
        out = ModelPassResult(fingerprint=fingerprint, embedding_key=emb_key)
        vectors = open_vectors(ws, emb_key)  # also moves an older workspace's embedding rows out
        with ws.store.read() as con:
            out.loss = get_cached(con, LOSS, loss_key, ids)
        if with_embeddings:
            out.embedding = vectors.get(ids)
        todo = [i for i in ids if i not in out.loss or (with_embeddings and i not in out.embedding)
                or (need_last_nll and "last_nll" not in out.loss[i])]
        if not todo:
            return out

        def sink(rows: LossRows) -> None:
            out.loss.update(zip(rows.ids, rows.payloads, strict=True))
            out.embedding.update(zip(rows.ids, rows.embeddings, strict=False))

        if executor is None:
            from middo_core.executors.local import LocalExecutor

            executor = LocalExecutor()
        out.stats = executor.loss_pass(ws, self, model_name, todo, [samples[i] for i in todo],
                                       source, (loss_key, emb_key), with_embeddings, sink,
                                       progress=progress, stage=stage)
        out.computed = out.stats.samples
        return out

"""The signal contract, the registry, and cache keys.

A signal is a pydantic model whose fields are its parameters; `name` is its stable key (registry
key, CLI word, cache namespace, report label). It writes the columns named in `columns` to the
signal table, one row per sample. There are two ways to compute them:

- Its own model pass (the common case, and all a new signal needs):
  `compute(batch, model) -> DataFrame` indexed by sample id with `columns`. The diagnosis runs it
  through the executor over the samples it has no cached value for, under the model of `role`
  ("post": the model fine-tuned on D(i); "base"; "judge"; None: no model), `chunk_size()` samples
  at a time; rows are cached under (name, `key(fingerprint)`) in the store's signal cache. `load`
  (lilac's setup) makes the `model` compute gets; heavy imports belong there or in compute.
- Shared passes: `inputs()` names passes other signals read too (`LossPass`: the loss, and
  embeddings, of every sample under one model). The diagnosis runs each distinct pass once (a
  loss and an embedding request under the same model are one pass), caches it, and hands the
  signal the results in `from_inputs(ids, results)`. This is how complexity (losses under two
  models), diversity (embeddings of the post model's loss pass) and pmi quality (the judge's losses)
  share the model's reading of each sample.

    @SIGNALS.register
    class ResponseWords(Signal):
        name: Literal["response_words"] = "response_words"
        columns: ClassVar[tuple[str, ...]] = ("response_words",)
        role: ClassVar[Role | None] = None

        def compute(self, batch, model, progress=None):
            return pd.DataFrame({"response_words": [len(s.output.split()) for s in batch]},
                                index=[s.id for s in batch])

Columns beyond those of the built-in signals are stored as numbers (store/signals.py) and drawn
on the Diagnose page. A new signal is one file plus its entry in BUILTIN (or a SIGNALS.register
call of its own).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from middo_core.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from middo_core.config import SignalsConfig
    from middo_core.models.source import LoadedModel, ModelSource
    from middo_core.progress import ProgressFn
    from middo_core.sample import Sample

SIGNAL_NAMES: tuple[str, ...] = ("complexity", "diversity", "quality")  # the paper's three
BUILTIN = ("middo_core.signals.complexity", "middo_core.signals.diversity",
           "middo_core.signals.quality")  # the modules whose signals are registered

Role = Literal["base", "post", "judge"]


@dataclass(frozen=True)
class LossPass:
    """A shared input: the loss of every sample under the model of `role` (with `embeddings`,
    also its embedding; with `response_only`, of each response after an empty user turn, under
    its own sample id; with `last_nll`, payloads must carry the last response token's loss; with
    `novel`, the novel pass of middo_core.signals.judge_novel instead: per sample, the shares of
    repeated and restated response tokens and the loss of the others, with and without the
    instruction). Passes equal but for embeddings and last_nll are run once. stage: the progress
    label; label: the report's counter (the first signal to ask names both)."""

    role: Role
    embeddings: bool = False
    response_only: bool = False
    last_nll: bool = False
    novel: bool = False
    stage: str = field(default="", compare=False)
    label: str = field(default="", compare=False)


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    columns: ClassVar[tuple[str, ...]] = ()  # what it writes to the signal table
    role: ClassVar[Role | None] = "post"  # the model `compute` runs under
    stage: ClassVar[str] = ""  # progress label of its own pass (default: its name)
    report_field: ClassVar[str | None] = None  # the report field `describe` fills (None: details)

    @classmethod
    def from_config(cls, cfg: SignalsConfig) -> Signal:
        """The signal with the workspace's settings (middo.yaml `signals:`)."""
        return cls()

    def params(self) -> dict[str, Any]:
        """The parameters that change computed values (part of the cache key)."""
        return self.model_dump(mode="json", exclude={"name"})

    def key(self, fingerprint: str) -> str:
        """The cache key of its own pass's rows under a model with this fingerprint."""
        return cache_key(self.name, fingerprint, self.params())

    def inputs(self) -> dict[str, LossPass]:
        """The shared passes `from_inputs` reads; none (the default): it runs `compute`."""
        return {}

    def load(self, source: ModelSource, model_name: str) -> LoadedModel:
        """What `compute` gets as `model` (once per process or Ray actor)."""
        return source.loaded(model_name)

    def compute(self, batch: list[Sample], model: LoadedModel | None,
                progress: ProgressFn | None = None) -> pd.DataFrame:
        """One row per sample of `batch`, indexed by sample id, with `columns` (numbers or None)."""
        raise NotImplementedError(f"signal '{self.name}' computes from its inputs")

    def chunk_size(self) -> int:
        """Samples per `compute` call: rows are cached between calls, so a stop loses at most one."""
        return 64

    def batch_stats(self) -> dict[str, float]:
        """Counters of the last `compute` call, summed into the diagnosis report."""
        return {}

    def from_inputs(self, ids: list[str], inputs: dict[str, Any],
                    progress: ProgressFn | None = None) -> dict[str, list]:
        """Its columns (each a list in `ids` order) from the results of `inputs()`."""
        raise NotImplementedError(f"signal '{self.name}' declares no inputs")

    def canary_columns(self, canary_ids: list[str], source_ids: list[str], ids: list[str],
                       inputs: dict[str, Any]) -> dict[str, list]:
        """Its columns for the canaries (middo_core.canaries; source_ids: the sample each was
        made from), read from the same passes, scored against the dataset `ids` without changing
        the dataset's values. Default: each canary like a sample of its own; a signal whose
        value depends on the other samples (diversity) places each canary among `ids` in its
        source's stead."""
        return self.from_inputs(canary_ids, inputs)

    def describe(self, stats: dict[str, float]) -> dict[str, Any]:
        """What the diagnosis report keeps about this run of the signal (stats: its own pass's;
        a `covered` entry: the sequences its passes covered, where that is not the sample count)."""
        return {}


SIGNALS: Registry[Signal] = Registry("signal")


def registered() -> Registry[Signal]:
    """SIGNALS with the built-in signals registered."""
    for module in BUILTIN:
        importlib.import_module(module)
    return SIGNALS


def cache_key(*parts: Any) -> str:
    """A stable 16-hex-digit key from model fingerprints, template hashes and parameters."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

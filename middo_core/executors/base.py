"""The executor contract: where the model passes of a diagnosis (and refinement calls) run.

An executor is handed work the caller could not serve from the cache and must (1) compute it with
the shared functions of middo_core.executors.work, (2) persist it into the workspace's signal cache
(the store stays the single source of truth), and (3) hand the rows to `sink` so the caller has
them in memory. `local` does this in this process, batch by batch; `ray` spreads it over the
actors of a Ray cluster, which write Parquet shards that one short transaction ingests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from middo_core.executors.work import JudgeStats, LossRows
from middo_core.progress import ProgressFn
from middo_core.registry import Registry
from middo_core.sample import Sample
from middo_core.signals.forward import PassStats
from middo_core.workspace import Workspace

LossSink = Callable[[LossRows], None]
JudgeSink = Callable[[list[tuple[str, dict]]], None]


class Executor(ABC):
    name: ClassVar[str]

    @abstractmethod
    def loss_pass(self, ws: Workspace, signal, model_name: str, ids: list[str],
                  samples: list[Sample], source, keys: tuple[str, str], with_embeddings: bool,
                  sink: LossSink, progress: ProgressFn | None = None,
                  stage: str = "loss") -> PassStats:
        """Losses (and embeddings) of `samples` under `model_name`, cached under keys
        (loss key, embedding key). signal: a ComplexitySignal; source: a ModelSource."""

    @abstractmethod
    def judge(self, ws: Workspace, signal, judge_model: str, ids: list[str],
              samples: list[Sample], source, key: str, sink: JudgeSink, chunk: int,
              progress: ProgressFn | None = None, stage: str = "quality",
              done_before: int = 0) -> JudgeStats:
        """The six ratings and quality of `samples`, cached under `key`, judged `chunk` samples
        at a time (signal: a QualitySignal). done_before: samples served from the cache (progress
        counts them as done)."""

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:  # noqa: B027 - optional: most executors hold nothing
        """Release what the executor started (a Ray session it created)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


EXECUTORS: Registry[Executor] = Registry("executor")


def make_executor(name: str = "local", **options: Any) -> Executor:
    """An executor by name: `local` (no options) or `ray` (address, actors, ... see RayExecutor)."""
    import middo_core.executors.local  # noqa: F401 - registers local
    import middo_core.executors.ray_executor  # noqa: F401 - registers ray (Ray imported lazily)

    cls = EXECUTORS.get(name)
    return cls(**{k: v for k, v in options.items() if v is not None})  # type: ignore[call-arg]

"""The executor contract: where work runs, knowing no signal by name.

`map(ws, work, ids, samples, source, sink)` runs any work object over the samples the caller
could not serve from the cache, and must (1) compute them with `work.run`, (2) persist the rows
into the workspace's signal cache under (work.namespace, work.key), and embeddings, when the work
has a `vector_key`, into the vector cache (the store stays the single source of truth), and (3)
hand the rows to `sink` so the caller has them in memory. `local` does this in this process as
rows finish; `ray` cuts the samples into `work.tasks(...)` and runs them on a pool of actors that
write Parquet shards, which one short transaction ingests.

A work object (middo_core.signals.passes has the two kinds) is picklable and has:
    model_name, namespace, key, vector_key (str | None)
    load(source) -> model                         # once per process or actor
    tasks(samples, source, size) -> [[positions]]  # how to cut the samples into tasks
    run(model, ids, samples, emit, progress) -> {counter: number}   # emit(CacheRows) as rows finish

`run_tasks(ws, work, tasks)` is the plainer shape, for work whose results are not signal rows
(refinement's proposals): each task, any picklable value, is run by `work.run_task(state, task)`
with `state = work.load(source)` made once per process or worker, and the results come back to
the caller as tasks finish; nothing is stored. `workers()` says how many run at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from middo_core.models.source import ModelSource
from middo_core.progress import Progress, ProgressFn
from middo_core.registry import Registry
from middo_core.sample import Sample
from middo_core.store.signals import CacheRows
from middo_core.workspace import Workspace

Sink = Callable[[CacheRows], None]


class Executor(ABC):
    name: ClassVar[str]

    @abstractmethod
    def map(self, ws: Workspace, work: Any, ids: list[str], samples: list[Sample],
            source: ModelSource, sink: Sink, progress: ProgressFn | None = None,
            stage: str = "", done_before: int = 0) -> dict[str, float]:
        """Run `work` over `samples` (see the module docstring); returns its summed counters.
        done_before: samples the caller served from the cache (progress counts them as done)."""

    def run_tasks(self, ws: Workspace, work: Any, tasks: list[Any],
                  source: ModelSource | None = None) -> Iterator[Any]:
        """`work.run_task(state, task)` for each task, `state = work.load(source)` made once per
        worker; yields the results as tasks finish (see the module docstring). Here: in this
        process, in order."""
        state = work.load(source or ModelSource())
        for task in tasks:
            yield work.run_task(state, task)

    def workers(self) -> int:
        """How many workers run tasks at once."""
        return 1

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:  # noqa: B027 - optional: most executors hold nothing
        """Release what the executor started (a Ray session it created)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def relabel(progress: ProgressFn | None, stage: str, done_before: int) -> ProgressFn | None:
    """A work's progress events under `stage`, counting `done_before` samples as done."""
    if progress is None:
        return None
    return lambda ev: progress(Progress(stage, done_before + ev.done, done_before + ev.total,
                                        ev.message))


def add_counters(total: dict[str, float], part: dict[str, Any]) -> None:
    for name, value in part.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            total[name] = total.get(name, 0) + value


EXECUTORS: Registry[Executor] = Registry("executor")


def make_executor(name: str = "local", **options: Any) -> Executor:
    """An executor by name: `local` (no options) or `ray` (address, actors, ... see RayExecutor)."""
    import middo_core.executors.local  # noqa: F401 - registers local
    import middo_core.executors.ray_executor  # noqa: F401 - registers ray (Ray imported lazily)

    cls = EXECUTORS.get(name)
    return cls(**{k: v for k, v in options.items() if v is not None})  # type: ignore[call-arg]

"""The in-process executor: one model at a time in this process.

Rows are checkpointed as they finish, so an interrupted pass resumes from there: their embeddings
as one vector-cache shard first, then their cache rows in a short transaction (a cached loss
therefore always has its embedding beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from middo_core.executors.base import EXECUTORS, Executor, Sink, relabel
from middo_core.models.source import ModelSource
from middo_core.progress import ProgressFn
from middo_core.sample import Sample
from middo_core.store.signals import CacheRows
from middo_core.workspace import Workspace


@EXECUTORS.register
@dataclass
class LocalExecutor(Executor):
    name: ClassVar[str] = "local"

    def map(self, ws: Workspace, work: Any, ids: list[str], samples: list[Sample],
            source: ModelSource, sink: Sink, progress: ProgressFn | None = None,
            stage: str = "", done_before: int = 0) -> dict[str, float]:
        from middo_core.store.signals import put_cached
        from middo_core.store.vectors import vector_cache

        vectors = vector_cache(ws, work.vector_key) if work.vector_key else None

        def checkpoint(rows: CacheRows) -> None:
            sink(rows)
            if vectors is not None and rows.vectors is not None:
                vectors.put(rows.ids, rows.vectors)
                vectors.compact()  # keeps a long pass at tens of files, not thousands
            with ws.store.write() as con:  # short transaction between batches
                put_cached(con, work.namespace, work.key, rows.cache_rows())

        model = work.load(source)
        return work.run(model, ids, samples, checkpoint,
                        progress=relabel(progress, stage, done_before))

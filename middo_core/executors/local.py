"""The in-process executor: today's path, one model at a time in this process.

Finished batches are checkpointed as they complete, so an interrupted pass resumes from there:
their embeddings as one vector-cache shard first, then their losses in a short transaction (a
cached loss therefore always has its embedding beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from middo_core.executors.base import EXECUTORS, Executor, JudgeSink, LossSink
from middo_core.executors.work import (
    LOSS,
    QUALITY,
    JudgeStats,
    LossRows,
    compute_losses,
    judge_rows,
)
from middo_core.progress import ProgressFn, report
from middo_core.sample import Sample
from middo_core.signals.forward import PassStats
from middo_core.workspace import Workspace


@EXECUTORS.register
@dataclass
class LocalExecutor(Executor):
    name: ClassVar[str] = "local"

    def loss_pass(self, ws: Workspace, signal, model_name: str, ids: list[str],
                  samples: list[Sample], source, keys: tuple[str, str], with_embeddings: bool,
                  sink: LossSink, progress: ProgressFn | None = None,
                  stage: str = "loss") -> PassStats:
        from middo_core.store.signals import put_cached
        from middo_core.store.vectors import vector_cache

        tokenizer = source.tokenizer(model_name)
        vectors = vector_cache(ws, keys[1])

        def checkpoint(rows: LossRows) -> None:
            sink(rows)
            matrix = rows.matrix()
            if matrix is not None:
                vectors.put(rows.ids, matrix)
                vectors.compact()  # keeps a long pass at tens of files, not thousands
            with ws.store.write() as con:  # short transaction between batches
                put_cached(con, LOSS, keys[0], rows.cache_rows())

        model = source.model(model_name)
        return compute_losses(model, tokenizer, signal, ids, samples, with_embeddings, checkpoint,
                              progress=progress, stage=stage)

    def judge(self, ws: Workspace, signal, judge_model: str, ids: list[str],
              samples: list[Sample], source, key: str, sink: JudgeSink, chunk: int,
              progress: ProgressFn | None = None, stage: str = "quality",
              done_before: int = 0) -> JudgeStats:
        from middo_core.store.signals import put_cached

        stats = JudgeStats()
        total = done_before + len(ids)
        for start in range(0, len(ids), chunk):
            part_ids, part = ids[start:start + chunk], samples[start:start + chunk]
            offset = done_before + start

            def inner(ev, offset=offset, size=len(part)):
                report(progress, stage, offset + int(size * ev.done / max(ev.total, 1)), total)

            model = source.model(judge_model)
            rows, part_stats = judge_rows(signal, part_ids, part, model,
                                          source.tokenizer(judge_model),
                                          progress=inner if progress else None)
            with ws.store.write() as con:  # checkpoint: finished chunks survive an interruption
                put_cached(con, QUALITY, key, rows)
            sink(rows)
            stats.add(part_stats)
        return stats

"""Refinement on an executor's workers (Ray): jobs as tasks, an LLM backend per worker.

`refine_on(executor, ...)` hands `RefineWork` to the executor's generic `run_tasks`, so the
executor knows nothing of refinement. Each worker builds the same backend as the driver (its
public settings travel, never a key: an endpoint's OPENAI_API_KEY comes from the worker's own
environment), a Runner and an LLMClient on one event loop it keeps, with the workspace's on-disk
answer cache (shared storage) and an equal share of the budget, and runs a task's jobs with the
same `Runner.run` as in-process. Proposal rows come back to the driver, which stores them in
short transactions as in-process.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from middo_core.progress import ProgressFn, report
from middo_core.refine.pipeline import Job, Runner, tally, write_rows
from middo_core.refine.report import RefineOptions, RefineReport
from middo_core.sample import Sample
from middo_core.workspace import Workspace

MAX_TASK_JOBS = 64
TASKS_PER_WORKER = 4  # smaller tasks than workers x 1: progress moves, and a slow task does not hold the rest


def backend_settings(llm) -> dict[str, Any]:
    """The public settings of a backend instance (dataclass init fields), to rebuild it elsewhere."""
    return {f.name: getattr(llm, f.name) for f in fields(llm)
            if f.init and not f.name.startswith("_") and f.name != "stats"}


def job_payload(job: Job) -> dict[str, Any]:
    """A job as plain JSON values (its operator is rebuilt from the axis on the worker)."""
    return {"proposal_id": job.proposal_id, "axis": job.axis, "source_id": job.source_id,
            "source": job.source.model_dump(mode="json"), "neighbour_ids": job.neighbour_ids,
            "neighbours": [n.model_dump(mode="json") for n in job.neighbours],
            "attempt": job.attempt}


class _Worker:
    """What one worker keeps between tasks: the backend, the runner, the client and its loop."""

    def __init__(self, work: RefineWork) -> None:
        from middo_core.config import RefineConfig
        from middo_core.llm import BACKENDS, LLMCache, LLMClient, Prices

        cfg = RefineConfig(**work.refine_config)
        self.llm = BACKENDS.get(work.backend)(**work.settings)
        self.variant = work.variant
        self.runner = Runner(work.iteration, self.llm, cfg, work.variant,
                             RefineOptions(**work.options))
        slots = max(cfg.concurrency, getattr(self.llm, "batch_size", 0))
        self.client = LLMClient(self.llm, LLMCache(Path(work.cache_dir)),
                                Prices(cfg.price_per_1k_input, cfg.price_per_1k_output),
                                work.budget_usd, concurrency=slots)
        self.loop = asyncio.new_event_loop()  # one loop for the worker's life: the client lives on it

    def jobs(self, payloads: list[dict[str, Any]]) -> list[Job]:
        from middo_core.refine.operators import operator_for

        return [Job(d["proposal_id"], d["axis"], operator_for(d["axis"], self.variant),  # type: ignore[arg-type]
                    d["source_id"], Sample(**d["source"]), d["neighbour_ids"],
                    [Sample(**n) for n in d["neighbours"]], d["attempt"]) for d in payloads]

    async def run(self, jobs: list[Job]) -> list:
        return await asyncio.gather(*(self.runner.run(job, self.client) for job in jobs))


@dataclass
class RefineWork:
    """Refinement jobs as task work for `Executor.run_tasks`: picklable settings only."""

    iteration: int
    refine_config: dict[str, Any]
    backend: str
    settings: dict[str, Any]
    variant: str
    options: dict[str, Any]
    cache_dir: str
    budget_usd: float | None  # this worker's share

    def load(self, source) -> _Worker:
        return _Worker(self)

    def run_task(self, worker: _Worker, payloads: list[dict[str, Any]]) -> dict[str, Any]:
        """The task's proposal rows (None: stopped by the budget) and the usage it added."""
        before = dict(worker.client.usage.to_json())
        retries = worker.llm.stats.retries
        rows = worker.loop.run_until_complete(worker.run(worker.jobs(payloads)))
        usage = {k: v - before.get(k, 0) for k, v in worker.client.usage.to_json().items()}
        usage["retries"] = worker.llm.stats.retries - retries
        # as JSON values, the same as the rows an in-process run stores
        return {"rows": json.loads(json.dumps(rows, default=str)), "usage": usage}


def refine_on(executor, ws: Workspace, jobs: list[Job], runner: Runner, rep: RefineReport,
              opts: RefineOptions, progress: ProgressFn | None = None,
              stage: str = "refine") -> list[dict[str, Any]]:
    """Run `jobs` on the executor's workers; proposal rows are stored in short transactions as
    tasks finish. Fills rep's tallies and usage; returns the rows not yet stored."""
    if not jobs:
        return []
    workers = executor.workers()
    cfg = runner.cfg
    per_task = max(1, min(MAX_TASK_JOBS, -(-len(jobs) // (TASKS_PER_WORKER * workers))))
    tasks = [[job_payload(j) for j in jobs[s:s + per_task]] for s in range(0, len(jobs), per_task)]
    work = RefineWork(iteration=runner.iteration, refine_config=cfg.model_dump(mode="json"),
                      backend=runner.backend.name, settings=backend_settings(runner.backend),
                      variant=runner.variant, options=vars(opts),
                      cache_dir=str(ws.artifacts / "llm_cache"),
                      budget_usd=None if cfg.budget_usd is None else cfg.budget_usd / workers)
    usage: dict[str, float] = {}
    done, buffer = 0, []
    report(progress, stage, 0, len(jobs), "starting")
    try:
        for out in executor.run_tasks(ws, work, tasks):
            for row in out["rows"]:
                done += 1
                if row is None:
                    rep.not_created_budget += 1
                else:
                    tally(rep, row)
                    buffer.append(row)
            for k, v in out["usage"].items():
                usage[k] = usage.get(k, 0) + v
            if len(buffer) >= opts.flush_every:
                write_rows(ws, buffer)
                buffer = []
            report(progress, stage, done, len(jobs),
                   f"{rep.total_created} proposals, {rep.total_failed} failed")
        rows_left, buffer = buffer, []
        return rows_left  # stored with the iteration record, in one transaction
    finally:
        if buffer:
            write_rows(ws, buffer)  # whatever finished before a stop or an error is kept
        rep.retries = int(usage.pop("retries", 0))
        rep.usage = usage

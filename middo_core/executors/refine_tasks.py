"""Refinement on Ray: jobs as tasks, an LLM backend per actor, proposal rows back to the driver.

Each actor builds the same backend as the driver (its public settings travel, never a key: an
endpoint's OPENAI_API_KEY comes from the worker's own environment), a Runner and an LLMClient on
one event loop it keeps, with the workspace's on-disk answer cache (shared storage) and an equal
share of the budget. `__call__` runs a task's jobs with the same `Runner.run` as in-process.
Proposal rows come back to the driver, which stores them in short transactions as in-process.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from middo_core.sample import Sample


def backend_settings(llm) -> dict[str, Any]:
    """The public settings of a backend instance (dataclass init fields), to rebuild it elsewhere."""
    return {f.name: getattr(llm, f.name) for f in fields(llm)
            if f.init and not f.name.startswith("_") and f.name != "stats"}


def job_row(task: int, jobs: list) -> dict[str, Any]:
    return {"task": task, "jobs": json.dumps([{
        "proposal_id": j.proposal_id, "axis": j.axis, "source_id": j.source_id,
        "source": j.source.model_dump(mode="json"), "neighbour_ids": j.neighbour_ids,
        "neighbours": [n.model_dump(mode="json") for n in j.neighbours], "attempt": j.attempt,
    } for j in jobs])}


class RefineActor:
    def __init__(self, iteration: int, refine_config: dict, backend: str, settings: dict,
                 variant: str, options: dict, cache_dir: str, budget_usd: float | None) -> None:
        from middo_core.config import RefineConfig
        from middo_core.llm import BACKENDS, LLMCache, LLMClient, Prices
        from middo_core.refine.pipeline import Runner
        from middo_core.refine.report import RefineOptions

        cfg = RefineConfig(**refine_config)
        self.llm = BACKENDS.get(backend)(**settings)
        self.variant = variant
        self.runner = Runner(iteration, self.llm, cfg, variant, RefineOptions(**options))
        slots = max(cfg.concurrency, getattr(self.llm, "batch_size", 0))
        self.client = LLMClient(self.llm, LLMCache(Path(cache_dir)),
                                Prices(cfg.price_per_1k_input, cfg.price_per_1k_output),
                                budget_usd, concurrency=slots)
        self.loop = asyncio.new_event_loop()  # one loop for the actor's life: the client lives on it

    def _jobs(self, text: str) -> list:
        from middo_core.refine.operators import operator_for
        from middo_core.refine.pipeline import Job

        return [Job(d["proposal_id"], d["axis"], operator_for(d["axis"], self.variant),
                    d["source_id"], Sample(**d["source"]), d["neighbour_ids"],
                    [Sample(**n) for n in d["neighbours"]], d["attempt"]) for d in json.loads(text)]

    async def _run(self, jobs: list) -> list:
        return await asyncio.gather(*(self.runner.run(job, self.client) for job in jobs))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {"task": [], "rows": [], "usage": []}
        for i in range(len(batch["task"])):
            before = dict(self.client.usage.to_json())
            retries = self.llm.stats.retries
            rows = self.loop.run_until_complete(self._run(self._jobs(str(batch["jobs"][i]))))
            usage = {k: v - before.get(k, 0) for k, v in self.client.usage.to_json().items()}
            usage["retries"] = self.llm.stats.retries - retries
            out["task"].append(int(batch["task"][i]))
            out["rows"].append(json.dumps(rows, default=str))
            out["usage"].append(json.dumps(usage))
        return out

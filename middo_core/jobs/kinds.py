"""Job kinds: one table from a kind's name to the function a background worker runs for it.

A function is `fn(ws, run_id, iteration, args, progress) -> dict | None` (the returned dict
becomes the run's result.json). The table names it as "module:function" and the module is
imported only when a job of that kind starts or runs, so importing the jobs package loads no
model code, and the worker (a fresh process) finds every kind the same way. Adding a kind is one
line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace

JobFn = Callable[[Workspace, str, "int | None", dict[str, Any], ProgressFn], "dict[str, Any] | None"]

KINDS: dict[str, str] = {
    "train": "middo_core.train.jobs:train_job",
    "evaluate": "middo_core.train.jobs:evaluate_job",
    "train-nodes": "middo_core.train.nodes:train_nodes_job",
    "diagnose": "middo_core.loop:diagnose_job",
    "loop": "middo_core.loop:loop_job",
    "first_iteration": "middo_core.loop:first_iteration_job",
    "refine": "middo_core.refine.job:refine_job",
    "import": "middo_core.data.job:import_job",
    "projection": "middo_core.projections:projection_job",
    "serve": "middo_core.refine.serve_job:serve_job",
    "search_index": "middo_core.search_index:search_index_job",
}


class UnknownJobKind(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


def get_job_kind(name: str) -> JobFn:
    """The function run for jobs of `name` (its module imported now)."""
    if name not in KINDS:
        raise UnknownJobKind(f"unknown job kind '{name}' (known: {', '.join(sorted(KINDS))})")
    module, function = KINDS[name].split(":")
    return getattr(importlib.import_module(module), function)


def job_kinds() -> list[str]:
    return sorted(KINDS)

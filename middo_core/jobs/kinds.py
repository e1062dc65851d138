"""Job kinds: a name -> the function a background worker runs for it.

An area makes its work runnable in the background with
`register_job_kind("diagnose", fn)` where `fn(ws, run_id, iteration, args, progress) -> dict | None`
(the returned dict becomes the run's result.json). The worker is a fresh process, so it must find
the registration again: it imports the module that registered the kind (recorded when the job
starts), and for kinds not registered in the starting process it imports the modules listed in
KIND_MODULES.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import Any

from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace

JobFn = Callable[[Workspace, str, "int | None", dict[str, Any], ProgressFn], "dict[str, Any] | None"]

_KINDS: dict[str, JobFn] = {}

# Where each kind is registered (imported on demand by the starter and by the worker).
KIND_MODULES: dict[str, str] = {
    "train": "middo_core.jobs.builtin",
    "evaluate": "middo_core.jobs.builtin",
    "diagnose": "middo_core.loop",
    "refine": "middo_core.refine",
    "loop": "middo_core.loop",
    "first_iteration": "middo_core.loop",
    "import": "middo_core.data.job",
    "projection": "middo_core.projections",
}


class UnknownJobKind(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


def register_job_kind(name: str, fn: JobFn) -> JobFn:
    """Register (or replace: modules may be re-imported) the function run for jobs of `name`."""
    _KINDS[name] = fn
    return fn


def get_job_kind(name: str, module: str | None = None) -> JobFn:
    if name not in _KINDS:
        for mod in filter(None, (module, KIND_MODULES.get(name))):
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    raise
            if name in _KINDS:
                break
    if name not in _KINDS:
        known = ", ".join(sorted(_KINDS)) or "none"
        raise UnknownJobKind(f"unknown job kind '{name}' (registered: {known})")
    return _KINDS[name]


def job_kinds() -> list[str]:
    for mod in set(KIND_MODULES.values()):
        with contextlib.suppress(ImportError):
            importlib.import_module(mod)
    return sorted(_KINDS)

"""The evaluator contract: a small pydantic class with a stable `name` and its parameters.

`run(ctx, progress)` scores the model held by the context and returns metric rows; evaluators
share one loaded model per `evaluate` call. An evaluator whose data is missing returns a
`skipped` reason instead of failing the whole suite.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from middo_core.progress import ProgressFn
from middo_core.registry import Registry
from middo_core.workspace import Workspace


class EvalError(RuntimeError):
    pass


@dataclass
class EvalContext:
    ws: Workspace
    iteration: int
    model_path: str
    sample_size: int
    seed: int = 0
    device: str = "auto"
    prompt_format: str = "chat"
    _loaded: tuple[Any, Any] | None = None

    def model(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use and shared by the suite's evaluators."""
        if self._loaded is None:
            from middo_core.models.loader import load_model

            model, tokenizer = load_model(self.model_path, device=self.device)
            self._loaded = (model, tokenizer)
        return self._loaded


@dataclass
class EvalOutcome:
    metrics: list[tuple[str, float, int | None]] = field(default_factory=list)  # (metric, value, n)
    skipped: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few items, for a human look


class Evaluator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    sample_size: int | None = None  # None: eval.sample_size of the workspace config
    benchmark: ClassVar[str | None] = None  # metrics table key; defaults to name

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        raise NotImplementedError

    def size(self, ctx: EvalContext) -> int:
        return self.sample_size if self.sample_size is not None else ctx.sample_size


EVALUATORS: Registry[Evaluator] = Registry("evaluator")


def seeded_subset(items: list, n: int, seed: int) -> list:
    """The same `n` items for every model and iteration (so numbers compare), in source order."""
    if n <= 0 or n >= len(items):
        return list(items)
    picked = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in picked]


def package_data(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{package}' is not installed (make setup installs it)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed package '{package}'")
    return path


def normalize_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").rstrip("."))
    except ValueError:
        return None

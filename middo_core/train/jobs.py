"""The background job functions of training and evaluation (kinds "train" and "evaluate")."""

from __future__ import annotations

from typing import Any

from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace


def _iteration(iteration: int | None, kind: str) -> int:
    if iteration is None:
        raise ValueError(f"a {kind} job needs an iteration")
    return iteration


def train_job(ws: Workspace, run_id: str, iteration: int | None, args: dict[str, Any],
              progress: ProgressFn) -> dict[str, Any]:
    from middo_core.train.trainer import train

    result = train(ws, _iteration(iteration, "train"), progress=progress,
                   resume=bool(args.get("resume", True)), overrides=args.get("overrides"),
                   preset=args.get("preset"))
    return result.to_dict()


def evaluate_job(ws: Workspace, run_id: str, iteration: int | None, args: dict[str, Any],
                 progress: ProgressFn) -> dict[str, Any]:
    from middo_core.evaluate import evaluate

    return evaluate(ws, _iteration(iteration, "evaluate"), suite=args.get("suite"),
                    model=args.get("model"), progress=progress)


"""Fine-tuning M(i) on D(i) and evaluating it. Light at import: torch and transformers load on use.

    train(ws, iteration, progress=None, resume=True) -> TrainResult
    evaluate(ws, iteration, suite=None, model=None, progress=None) -> dict
"""

from __future__ import annotations

from typing import Any


def train(ws, iteration: int, progress=None, resume: bool = True, **kwargs: Any):
    from middo_core.train.trainer import train as _train

    return _train(ws, iteration, progress=progress, resume=resume, **kwargs)


def evaluate(ws, iteration: int, suite: list[str] | None = None, model: str | None = None,
             progress=None, **kwargs: Any) -> dict:
    from middo_core.evaluate import evaluate as _evaluate

    return _evaluate(ws, iteration, suite=suite, model=model, progress=progress, **kwargs)


__all__ = ["evaluate", "train"]

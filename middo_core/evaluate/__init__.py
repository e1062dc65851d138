"""Evaluating M(i): evaluators from a registry, results in the store's metrics table.

    evaluate(ws, iteration, suite=["heldout", "mmlu"]) -> {"results": {name: {...}}, ...}

Built in (offline, packaged data): heldout, demo_exact, mmlu, gsm8k, humaneval. With the `eval`
extra: lm-eval (lm-evaluation-harness, the paper's benchmark list).
"""

from __future__ import annotations

import time
from typing import Any

from middo_core.evaluate import builtin, humaneval, lm_eval_adapter  # noqa: F401 - registration
from middo_core.evaluate.base import EVALUATORS, EvalContext, EvalError, EvalOutcome, Evaluator
from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace

BUILTIN_SUITE = ["heldout", "demo_exact", "mmlu", "gsm8k", "humaneval"]


def evaluate(ws: Workspace, iteration: int, suite: list[str] | None = None, model: str | None = None,
             progress: ProgressFn | None = None, params: dict[str, dict[str, Any]] | None = None,
             sample_size: int | None = None) -> dict[str, Any]:
    """Run `suite` (default: eval.suite of the config) on M(iteration), or on `model` when given;
    each evaluator's metrics are stored as soon as it finishes."""
    from middo_core.store import iterations as iter_store

    names = list(suite or ws.config.eval.suite)
    evaluators = [_make(name, (params or {}).get(name, {})) for name in names]  # bad names fail first
    with ws.store.read() as con:
        record = iter_store.get_iteration(con, iteration)
    checkpoint = (record or {}).get("model")
    target = model or checkpoint
    if not target:
        raise EvalError(f"M({iteration}) is not trained yet: run `middo train` first, or pass a model")
    ctx = EvalContext(ws=ws, iteration=iteration, model_path=target,
                      sample_size=sample_size if sample_size is not None else ws.config.eval.sample_size,
                      seed=ws.config.seed, device=ws.config.signals.device,
                      prompt_format=ws.config.signals.prompt_format)
    results: dict[str, Any] = {}
    for ev in evaluators:
        started = time.monotonic()
        outcome: EvalOutcome = ev.run(ctx, progress)
        rows = _rows(ev.name, outcome)
        if rows:
            with ws.store.write() as con:  # one short transaction per evaluator
                iter_store.put_metrics(con, iteration, rows)
        results[ev.name] = {
            "metrics": {f"{b}:{m}" if b != ev.name else m: v for b, m, v, _ in rows},
            "n": max((n or 0 for *_, n in rows), default=0),
            "skipped": outcome.skipped,
            "examples": outcome.examples,
            "wall_s": round(time.monotonic() - started, 2),
        }
    ran = any(r["skipped"] is None for r in results.values())
    if ran and target == checkpoint and record and record["status"] == "trained":
        with ws.store.write() as con:
            iter_store.upsert_iteration(con, iteration, status="evaluated")
    return {"iteration": iteration, "model": target, "results": results}


def _make(name: str, params: dict[str, Any]) -> Evaluator:
    try:
        cls = EVALUATORS.get(name)
    except KeyError as exc:
        raise EvalError(str(exc.args[0])) from None
    return cls(**params)


def _rows(name: str, outcome: EvalOutcome) -> list[tuple[str, str, float, int | None]]:
    """(benchmark, metric, value, n); a metric "task/acc" becomes benchmark "<name>/task"."""
    rows = []
    for metric, value, n in outcome.metrics:
        if "/" in metric:
            sub, metric = metric.split("/", 1)
            rows.append((f"{name}/{sub}", metric, value, n))
        else:
            rows.append((name, metric, value, n))
    return rows


__all__ = ["BUILTIN_SUITE", "EVALUATORS", "EvalContext", "EvalError", "EvalOutcome", "Evaluator",
           "evaluate"]

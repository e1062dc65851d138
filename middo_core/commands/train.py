"""`middo train`, `middo evaluate`, `middo runs`, `middo cancel`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from middo_core.commands.common import (
    console,
    emit_json,
    fail,
    results,
    run_lock,
    start_background,
    workspace,
)
from middo_core.progress import Cancelled, Progress, ProgressFn
from middo_core.workspace import Workspace


def _latest_version(ws: Workspace) -> int:
    from middo_core.store.samples import dataset_sizes

    with ws.store.read() as con:
        sizes = dataset_sizes(con)
    return max((i for i, s in sizes.items() if s.get("train")), default=0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@contextmanager
def _step_bar(enabled: bool) -> Iterator[ProgressFn]:
    """A rich bar per stage; training steps show the loss and an ETA from the step rate."""
    if not enabled:
        yield lambda event: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
        tasks: dict[str, Any] = {}

        def update(event: Progress) -> None:
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(event.stage, total=max(event.total, 1), info="")
            info = []
            if getattr(event, "loss", None) is not None:
                info.append(f"loss {event.loss:.3f}")
            if getattr(event, "eta_s", None) is not None:
                info.append(f"ETA {_duration(event.eta_s)}")
            if event.message and not info:
                info.append(event.message[:60])
            bar.update(tasks[event.stage], completed=event.done, total=max(event.total, 1),
                       info="  ".join(info))

        yield update


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int | None = typer.Option(None, help="Dataset version to train on (default: the newest)"),
        method: str | None = typer.Option(None, help="full or lora (default: from the preset)"),
        preset: str | None = typer.Option(None, help="paper-7b, cpu-small or custom (default: train.preset)"),
        lr: float | None = typer.Option(None, "--lr", help="Learning rate"),
        epochs: float | None = typer.Option(None, help="Epochs"),
        max_len: int | None = typer.Option(None, help="Tokens per sample"),
        batch_size: int | None = typer.Option(None, help="Samples per device and step"),
        restart: bool = typer.Option(False, help="Ignore intermediate checkpoints and start over"),
        background: bool = typer.Option(False, "--background", help="Run as a background job"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable result"),
    ) -> None:
        """Fine-tune the base model on D(i) into M(i) (resumes an interrupted run)."""
        from middo_core.train.memory import InsufficientMemory
        from middo_core.train.presets import PlanError, resolve_plan
        from middo_core.train.trainer import TrainError
        from middo_core.train.trainer import train as run_train

        ws = workspace(directory)
        it = _latest_version(ws) if iteration is None else iteration
        overrides = {k: v for k, v in {"method": method, "learning_rate": lr, "epochs": epochs,
                                       "max_len": max_len, "batch_size": batch_size}.items() if v is not None}
        try:
            resolve_plan(ws.config.train, overrides, preset)  # bad options fail here, not in a log
        except PlanError as exc:
            fail(str(exc))
        if background:
            start_background(ws, "train", it, {"overrides": overrides, "preset": preset,
                                                "resume": not restart}, as_json)
            return
        started = time.monotonic()
        try:
            with run_lock(ws, "train"), _step_bar(not as_json) as bar:
                result = run_train(ws, it, progress=bar, resume=not restart, overrides=overrides,
                                   preset=preset)
        except (Cancelled, KeyboardInterrupt):
            console.print("[yellow]interrupted:[/yellow] run the same command again to resume "
                          "from the last intermediate checkpoint")
            raise typer.Exit(130) from None
        except (TrainError, InsufficientMemory, PlanError) as exc:
            fail(str(exc))
        if as_json:
            emit_json(result.to_dict())
            return
        resumed = f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else ""
        results.print(f"[bold]M({it})[/bold] trained on {result.samples:,} samples: {result.steps} steps"
                      f"{resumed}, final loss {result.losses[-1][1] if result.losses else float('nan'):.3f}, "
                      f"{time.monotonic() - started:.0f} s")
        results.print(f"  checkpoint: {result.checkpoint}")
        if result.truncated or result.dropped_empty:
            results.print(f"  {result.truncated:,} samples cut to {result.plan['max_len']} tokens, "
                          f"{result.dropped_empty:,} dropped (no response token left)")

    @app.command()
    def evaluate(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int | None = typer.Option(None, help="Iteration whose model to evaluate (default: the newest)"),
        suite: str | None = typer.Option(None, help="Comma-separated evaluators, e.g. heldout,demo_exact,mmlu,gsm8k,humaneval,lm-eval (default: eval.suite)"),
        model: str | None = typer.Option(None, help="Evaluate this model instead of M(i) (the base model as a baseline, say)"),
        sample_size: int | None = typer.Option(None, help="Items per benchmark (default: eval.sample_size)"),
        background: bool = typer.Option(False, "--background", help="Run as a background job"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable result"),
    ) -> None:
        """Score M(i) on the evaluation suite; results go to the metrics table."""
        from middo_core.evaluate import EVALUATORS, EvalError
        from middo_core.evaluate import evaluate as run_evaluate

        ws = workspace(directory)
        it = _latest_version(ws) if iteration is None else iteration
        names = [s.strip() for s in suite.split(",") if s.strip()] if suite else None
        unknown = [n for n in names or [] if n not in EVALUATORS.names()]
        if unknown:
            fail(f"unknown evaluator {', '.join(unknown)} (choose from {', '.join(EVALUATORS.names())})")
        if background:
            start_background(ws, "evaluate", it, {"suite": names, "model": model}, as_json)
            return
        try:
            with _step_bar(not as_json) as bar:
                out = run_evaluate(ws, it, suite=names, model=model, progress=bar, sample_size=sample_size)
        except (Cancelled, KeyboardInterrupt):
            console.print("[yellow]interrupted:[/yellow] benchmarks finished so far are stored")
            raise typer.Exit(130) from None
        except (EvalError, ValueError) as exc:
            fail(str(exc))
        if as_json:
            emit_json(out)
            return
        results.print(f"[bold]M({it})[/bold] = {out['model']}")
        for name, res in out["results"].items():
            if res["skipped"]:
                results.print(f"  {name}: [yellow]skipped[/yellow] ({res['skipped']})")
                continue
            values = ", ".join(f"{k} {v:.4g}" for k, v in res["metrics"].items())
            results.print(f"  {name} (n={res['n']}, {res['wall_s']:.0f} s): {values}")

    @app.command()
    def runs(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        limit: int = typer.Option(20, help="How many runs, newest first"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    ) -> None:
        """Background runs: id, kind, iteration, status, progress, started, finished."""
        from middo_core.jobs import list_jobs

        rows = list_jobs(workspace(directory), limit)
        if as_json:
            emit_json(rows)
            return
        if not rows:
            results.print("No runs yet.")
            return
        import pandas as pd

        from middo_core.tables import text_table

        table = pd.DataFrame([{
            "id": r["id"], "kind": r["kind"], "iteration": r["iteration"],
            "status": r["status"] + (f": {r['error']}" if r.get("error") and r["status"] == "failed" else ""),
            "progress": _progress_text(r.get("progress")), "started": _time(r.get("created_at")),
            "finished": _time(r.get("finished_at"))} for r in rows])
        results.print(text_table(table), markup=False)

    @app.command()
    def cancel(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        run_id: str = typer.Argument(..., help="Run id (see `middo runs`)"),
        grace: float = typer.Option(10.0, help="Seconds to let the job stop by itself before SIGTERM"),
    ) -> None:
        """Stop a background run."""
        from middo_core.jobs import JobError, cancel_job

        ws = workspace(directory)
        try:
            status = cancel_job(ws, run_id, grace_s=grace)
        except JobError as exc:
            fail(str(exc))
        results.print(f"run {run_id}: {status['status']}")


def _progress_text(progress: dict | None) -> str:
    if not progress:
        return ""
    text = f"{progress.get('stage', '')} {progress.get('done', 0)}/{progress.get('total', 0)}"
    if progress.get("loss") is not None:
        text += f" loss {progress['loss']:.3f}"
    if progress.get("eta_s"):
        text += f" ETA {_duration(progress['eta_s'])}"
    return text


def _time(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else ""

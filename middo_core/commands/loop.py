"""`middo loop`, `middo ablate`, `middo tables`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from middo_core.commands.common import (
    console,
    emit_json,
    fail,
    progress_bar,
    results,
    run_lock,
    workspace,
)
from middo_core.loop import LoopError, finish_loop, last_loop, record_loop, run_loop
from middo_core.progress import Cancelled
from middo_core.selection import SelectionError
from middo_core.tables import iteration_table, metrics_table, text_table
from middo_core.variants import ABLATIONS, VariantError, create_variant
from middo_core.workspace import Workspace


def register(app: typer.Typer) -> None:
    @app.command()
    def loop(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iterations: int | None = typer.Option(None, help="Iterations to run (default: config loop.iterations)"),
        review: str | None = typer.Option(None, help="auto: a policy decides; manual: stop for a curator"),
        resume: bool = typer.Option(False, help="Go on with the loop started last, with its options"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Run the whole loop from the seed data: init training and evaluation, then per iteration
        diagnose, select, refine, review, build, train, evaluate. --resume goes on where it stopped."""
        ws = workspace(directory)
        if review is not None and review not in ("auto", "manual"):
            fail("--review must be auto or manual")
        with run_lock(ws, "loop"):  # before the record: a refused loop changes nothing
            record = _loop_record(ws, directory, iterations, review, resume)
            settings = record["settings"]
            ws.config.loop.review = settings["review"]
            if review is not None:
                ws.save_config()
            try:
                with progress_bar(not as_json) as progress:
                    rep = run_loop(ws, settings["iterations"], progress=progress)
            except (LoopError, SelectionError, Cancelled) as exc:
                fail(str(exc) or f"cancelled; `middo loop {directory} --resume` goes on where it stopped")
            except KeyboardInterrupt:
                fail(f"interrupted; `middo loop {directory} --resume` goes on where it stopped", code=130)
            if rep.stopped_at is None:
                finish_loop(ws, record)
        if as_json:
            emit_json(rep.__dict__)
            return
        if rep.stopped_at == "review":
            results.print(
                f"Stopped for review of D({rep.stopped_iteration})'s proposals: "
                f"`middo review {directory}` (or the Studio), then `middo loop {directory} --resume`."
            )
        else:
            results.print(f"Loop done: {rep.iterations_done} iterations.")
        results.print(text_table(iteration_table(ws)), markup=False)

    @app.command()
    def ablate(
        directory: Path = typer.Argument(..., help="Main workspace folder"),
        without: str | None = typer.Option(None, help=f"Leave out one signal: {', '.join(ABLATIONS)}"),
        random_control: bool = typer.Option(False, "--random-control",
                                            help="Flag as many samples at random instead"),
        run: bool = typer.Option(False, help="Also run its loop now"),
    ) -> None:
        """Create an ablation (w/o loss, neighbour or score) or the random control beside the main run."""
        ws = workspace(directory)
        try:
            child = create_variant(ws, without=without, random_control=random_control)
        except VariantError as exc:
            fail(str(exc))
        results.print(f"Variant workspace: {child.root}")
        if run:
            with run_lock(child, "loop"), progress_bar() as progress:
                rep = run_loop(child, progress=progress)
            results.print(f"{child.config.name}: {rep.iterations_done} iterations")

    @app.command()
    def tables(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """The paper's tables for this run: counts per axis per iteration, and benchmark scores."""
        ws = workspace(directory)
        counts, scores = iteration_table(ws), metrics_table(ws)
        if as_json:
            emit_json({"iterations": counts.to_dict("records"),
                       "metrics": scores.reset_index().to_dict("records") if not scores.empty else []})
            return
        results.print(text_table(counts), markup=False)
        results.print(text_table(scores, index=True) if not scores.empty else "No evaluation yet.")


def _loop_record(ws: Workspace, directory: Path, iterations: int | None, review: str | None,
                 resume: bool) -> dict:
    """The loop to run: with --resume the last one started, with its options (those given now
    win), else a new one recorded now."""
    given = {k: v for k, v in {"iterations": iterations, "review": review}.items() if v is not None}
    last = last_loop(ws) if resume else None
    if last is None:
        settings = {"iterations": ws.config.loop.iterations, "review": ws.config.loop.review, **given}
        if resume:
            console.print("No record of an earlier loop here: running with "
                          + " ".join(f"--{k} {v}" for k, v in settings.items())
                          + " (middo.yaml's where not given).", markup=False)
        return record_loop(ws, settings)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["started_at"]))
    options = " ".join(f"--{k} {v}" for k, v in last["settings"].items())
    if last.get("finished") and not given:  # run_loop finds every step done and repeats none
        console.print(f"Nothing to resume: the loop started at {started} with {options} is done; "
                      f"`middo loop {directory} --iterations N` runs more iterations.", markup=False)
        return last
    settings = {**last["settings"], **given}
    now = "" if settings == last["settings"] else \
        "; now with " + " ".join(f"--{k} {v}" for k, v in given.items())
    console.print(f"Resuming the loop started at {started} with {options}{now}.", markup=False)
    if settings != last["settings"] or last.get("finished"):
        # the options given now are what a further resume goes on with
        return record_loop(ws, settings, last["started_at"])
    return last

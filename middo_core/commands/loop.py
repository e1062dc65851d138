"""`middo loop`, `middo ablate`, `middo tables`."""

from __future__ import annotations

from pathlib import Path

import typer

from middo_core.commands.common import emit_json, fail, progress_bar, results, workspace
from middo_core.loop import LoopError, run_loop
from middo_core.progress import Cancelled
from middo_core.selection import SelectionError
from middo_core.tables import iteration_table, metrics_table, text_table
from middo_core.variants import ABLATIONS, VariantError, create_variant


def register(app: typer.Typer) -> None:
    @app.command()
    def loop(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iterations: int | None = typer.Option(None, help="Iterations to run (default: config loop.iterations)"),
        review: str | None = typer.Option(None, help="auto: a policy decides; manual: stop for a curator"),
        resume: bool = typer.Option(False, help="Go on from where the loop stopped (the default anyway)"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Run the whole loop from the seed data: init training and evaluation, then per iteration
        diagnose, select, refine, review, build, train, evaluate. Rerun (or --resume) to go on."""
        ws = workspace(directory)
        if review is not None:
            if review not in ("auto", "manual"):
                fail("--review must be auto or manual")
            ws.config.loop.review = review  # type: ignore[assignment]
            ws.save_config()
        try:
            with progress_bar(not as_json) as progress:
                rep = run_loop(ws, iterations, progress=progress)
        except (LoopError, SelectionError, Cancelled) as exc:
            fail(str(exc) or "cancelled; rerun to resume")
        except KeyboardInterrupt:
            fail("interrupted; rerun `middo loop` to resume where it stopped", code=130)
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
            with progress_bar() as progress:
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

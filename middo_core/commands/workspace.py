"""`middo init` and `middo status`."""

from __future__ import annotations

from pathlib import Path

import typer

from middo_core.commands.common import emit_json, fail, results, workspace
from middo_core.config import WorkspaceConfig
from middo_core.status import workspace_status
from middo_core.workspace import WorkspaceError, init_workspace


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        directory: Path = typer.Argument(..., help="Folder to create the workspace in"),
        base_model: str = typer.Option("smollm2-135m", help="Base model: alias, local path or hub id"),
    ) -> None:
        """Create a workspace: middo.yaml, middo.duckdb and artifacts/."""
        try:
            ws = init_workspace(directory, WorkspaceConfig(name=directory.name, base_model=base_model))
        except WorkspaceError as exc:
            fail(str(exc))
        results.print(f"Created workspace {ws.root} (base model {base_model})")

    @app.command()
    def status(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    ) -> None:
        """Samples per iteration, iteration records and runs."""
        state = workspace_status(workspace(directory), with_health=True, with_review=True)
        if as_json:
            emit_json(state)
            return
        results.print(f"[bold]{state['name']}[/bold]  base model: {state['base_model']}")
        for it, sizes in state["dataset_sizes"].items():
            # the held-out set belongs to D(0) and is reused by every later evaluation
            held = f", {sizes['heldout']:,} held out" if sizes.get("heldout") else ""
            results.print(f"  D({it}): {sizes.get('train', 0):,} train{held}")
        for rec in state["iterations"]:
            results.print(f"  iteration {rec['number']}: {rec['status']}")
        scores = state["metrics"]
        if scores["latest"]:
            results.print(f"  M({scores['latest_iteration']}) scores: " + ", ".join(
                f"{name} {value:.4g}" for name, value in scores["latest"].items()), markup=False)
        review = state["review"]
        for it, found in review["agreement"].items():
            kappa = "undefined" if found["fleiss_kappa"] is None else f"{found['fleiss_kappa']:.2f}"
            results.print(f"  review of iteration {it}: {len(found['curators'])} curator(s), "
                          f"overlap {review['overlap']}, Fleiss' kappa {kappa} on "
                          f"{found['proposals_rated']:,} proposals", markup=False)
        for run in state["runs"][:5]:
            results.print(f"  run {run['id']}: {run['status']}")

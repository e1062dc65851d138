"""`middo import`, `middo export` and `middo demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from middo_core.commands.common import (
    console,
    emit_json,
    fail,
    progress_bar,
    results,
    start_background,
    workspace,
)
from middo_core.data import EXPORT_FORMATS, FORMATS, DataImportError, ExportError, RowError
from middo_core.data import export_dataset as _export_dataset
from middo_core.data import import_file as _import_file
from middo_core.files import disk_full, disk_full_message
from middo_core.progress import Progress
from middo_core.workspace import WorkspaceError

SHOWN_ERRORS = 20
BIG_FILE = 2 << 20  # show a progress bar from this many bytes on


def _print_errors(errors: list[RowError], total: int) -> None:
    for err in errors[:SHOWN_ERRORS]:
        console.print(f"  {err}", highlight=False, markup=False, soft_wrap=True)
    if total > SHOWN_ERRORS:
        console.print(f"  ... and {total - SHOWN_ERRORS:,} more")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else sum(
            p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def register(app: typer.Typer) -> None:
    @app.command("import")
    def import_cmd(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        file: Path = typer.Argument(..., help="Data file (JSON, JSONL, Parquet, CSV) or a datasets folder"),
        format: str | None = typer.Option(None, "--format", "-f",
                                          help=f"One of {', '.join(FORMATS)}; detected when omitted"),
        skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                          help="Import the valid records and report the others"),
        iteration: int = typer.Option(0, help="Dataset version to add the samples to"),
        split: str = typer.Option("train", help="train or heldout"),
        as_json: bool = typer.Option(False, "--json", help="Print the import report as JSON"),
        background: bool = typer.Option(False, "--background",
                                        help="Run as a background job (middo runs / middo cancel)"),
    ) -> None:
        """Import SFT data (Alpaca, ShareGPT, OpenAI messages; JSON, JSONL, Parquet, CSV, datasets)."""
        if format is not None and format not in FORMATS:
            fail(f"unknown --format {format!r} (expected one of {', '.join(FORMATS)})")
        if split not in ("train", "heldout"):
            fail(f"unknown --split {split!r} (expected train or heldout)")
        ws = workspace(directory)
        if background:
            start_background(ws, "import", iteration, {"path": str(file.resolve()), "format": format,
                                                        "skip_invalid": skip_invalid, "split": split},
                              as_json)
            return
        try:
            with progress_bar(enabled=_size(file) >= BIG_FILE and not as_json) as bar:
                rep = _import_file(ws, file, format=format, skip_invalid=skip_invalid, progress=bar,
                                   iteration=iteration, split=split)
        except DataImportError as exc:
            if as_json:
                emit_json(exc.report.model_dump(mode="json"))
            n = exc.report.n_errors
            bad = f" in {exc.report.n_invalid:,} of {exc.report.n_read:,} records" if exc.report.n_invalid else ""
            console.print(f"[red]Nothing imported[/red]: {n:,} problem{'s' if n != 1 else ''}{bad} "
                          f"in {file}", highlight=False, soft_wrap=True)
            _print_errors(exc.errors, n)
            hint = "" if skip_invalid or exc.report.n_valid == 0 else \
                " (use --skip-invalid to import the valid records and report the others)"
            fail(f"import of {file} failed{hint}")
        if as_json:
            emit_json(rep.model_dump(mode="json"))
            return
        results.print(rep.summary(), highlight=False, markup=False, soft_wrap=True)
        if rep.n_errors:
            console.print(f"Skipped {rep.n_invalid:,} invalid record(s):")
            _print_errors(rep.errors, rep.n_errors)
        if rep.n_duplicates:
            rows = ", ".join(f"{d.row} (= row {d.first_row})" for d in rep.duplicates[:10])
            more = ", ..." if rep.n_duplicates > 10 else ""
            results.print(f"Exact duplicates imported once: rows {rows}{more}", highlight=False, soft_wrap=True)
        results.print(f"Report: {rep.report_path}", highlight=False, soft_wrap=True)

    @app.command()
    def export(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        out: Path = typer.Argument(..., help="Output file, or folder (always a folder for llamafactory)"),
        format: str = typer.Option("alpaca", "--format", "-f", help=f"One of {', '.join(EXPORT_FORMATS)}"),
        iteration: int | None = typer.Option(None, help="Dataset version (default: the latest)"),
        only_refined: bool = typer.Option(False, "--only-refined",
                                          help="Only samples Middo wrote (the paper's MiddOnly)"),
        split: str = typer.Option("train", help="train or heldout"),
    ) -> None:
        """Export a dataset version (Alpaca, JSONL, ShareGPT, OpenAI, Parquet, CSV, LLaMA-Factory)."""
        if format not in EXPORT_FORMATS:
            fail(f"unknown --format {format!r} (expected one of {', '.join(EXPORT_FORMATS)})")
        ws = workspace(directory)
        counted: list[int] = [0]
        with progress_bar() as bar:
            def track(event: Progress) -> None:
                counted[0] = event.total
                if event.total >= 50_000:
                    bar(event)

            try:
                path = _export_dataset(ws, out, format=format, iteration=iteration,
                                       only_refined=only_refined, progress=track, split=split)
            except (ExportError, OSError) as exc:
                fail(disk_full_message(exc, out) if disk_full(exc) else str(exc))
        results.print(f"Wrote {counted[0]:,} samples to {path}", highlight=False, soft_wrap=True)
        if format == "llamafactory":
            results.print(f"LLaMA-Factory entry added to {path.parent / 'dataset_info.json'}",
                          highlight=False, soft_wrap=True)

    @app.command()
    def demo(
        directory: Path = typer.Argument(..., help="Folder to create the demo workspace in"),
        size: int = typer.Option(400, help="Number of samples (train + held out)"),
    ) -> None:
        """Create a workspace with the built-in demo set (generated; planted defects labelled apart)."""
        from middo_core.data.demo import LABELS_FILE, create_demo_workspace, load_planted_labels
        from middo_core.status import workspace_status

        try:
            ws = create_demo_workspace(directory, size=size)
        except (WorkspaceError, ValueError) as exc:
            fail(str(exc))
        sizes = workspace_status(ws)["dataset_sizes"].get("0", {})
        planted = len(load_planted_labels(ws))
        results.print(f"Created demo workspace {ws.root}: {sizes.get('train', 0):,} training samples "
                      f"({planted} with planted defects, labels in artifacts/{LABELS_FILE}), "
                      f"{sizes.get('heldout', 0):,} held out", highlight=False, soft_wrap=True)

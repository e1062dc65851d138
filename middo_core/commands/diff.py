"""`middo diff`: what changed between two dataset versions, listed or exported."""

from __future__ import annotations

from pathlib import Path

import typer

from middo_core.commands.common import emit_json, fail, workspace
from middo_core.version_diff import (
    AXES,
    KINDS,
    DiffSummary,
    VersionChange,
    VersionDiffError,
    diff_page,
    diff_summary,
    export_diff,
)

SNIPPET = 100  # characters of an instruction shown per change


def _snippet(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SNIPPET else line[: SNIPPET - 1] + "…"


def _print_summary(summary: DiffSummary) -> None:
    typer.echo(f"D({summary.a}) -> D({summary.b}): {summary.size_a:,} -> {summary.size_b:,} samples; "
               + ", ".join(f"{summary.total(k):,} {k}" for k in KINDS))
    typer.echo(summary.table().to_string(index=False))


def _print_change(change: VersionChange) -> None:
    ids = " -> ".join(i for i in (change.old_id, change.new_id) if i)
    typer.echo(f"{change.kind:<9}  {change.axis or '-':<10}  {ids}")
    if change.old is not None:
        typer.echo(f"  - {_snippet(change.old.instruction)}")
    if change.new is not None:
        typer.echo(f"  + {_snippet(change.new.instruction)}")


def register(app: typer.Typer) -> None:
    @app.command()
    def diff(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        a: int = typer.Argument(..., help="The version to compare from: D(A)"),
        b: int = typer.Argument(..., help="The version to compare with: D(B)"),
        axis: str | None = typer.Option(None, help=f"Only changes on this axis: {' | '.join(AXES)}"),
        kind: str | None = typer.Option(None, help=f"Only this kind of change: {' | '.join(KINDS)}"),
        out: Path | None = typer.Option(None, help="Write every matching change to FILE.jsonl or FILE.csv"),
        limit: int = typer.Option(20, min=0, help="Changes listed (without --out)"),
        offset: int = typer.Option(0, min=0, help="Skip this many changes first"),
        as_json: bool = typer.Option(False, "--json", help="Print the counts and changes as JSON"),
    ) -> None:
        """List the samples removed, added and rewritten between D(A) and D(B), or export them."""
        ws = workspace(directory)
        try:
            summary = diff_summary(ws, a, b)
            if out is not None:
                written = export_diff(ws, a, b, out, kind=kind, axis=axis)
                changes = []
            else:
                changes = diff_page(ws, a, b, kind=kind, axis=axis, limit=limit, offset=offset)
        except VersionDiffError as exc:
            fail(str(exc))
        total = summary.total(kind, axis)
        if as_json:
            payload = {**summary.model_dump(), "total": total}
            if out is not None:
                payload.update(written=written, path=str(out))
            else:
                payload.update(offset=offset, changes=[c.model_dump() for c in changes])
            emit_json(payload)
            return
        _print_summary(summary)
        if out is not None:
            typer.echo(f"Wrote {written:,} changes to {out}")
            return
        for change in changes:
            _print_change(change)
        rest = total - offset - len(changes)
        if rest > 0:
            typer.echo(f"... and {rest:,} more (--offset {offset + len(changes)}, or --out FILE.jsonl for all)")

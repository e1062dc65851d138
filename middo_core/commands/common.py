"""Shared CLI plumbing: opening workspaces, progress bars, clean errors.

A command's result goes to stdout (`results`); its progress, warnings and errors go to stderr
(`console`). Neither wraps a line: a path or an error copied out of the terminal stays whole, and
the terminal wraps what is too long for it.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from middo_core.progress import Progress as ProgressEvent
from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace, open_workspace

results = Console(soft_wrap=True, highlight=False)
console = Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` as one plain line on stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """A warning on stderr, as one line (markup in `message` is printed as text)."""
    console.print(f"[yellow]warning:[/yellow] {escape(message)}")


_opened: list[Path] = []  # the workspace this command opened


def workspace(path: Path) -> Workspace:
    try:
        ws = open_workspace(path)
    except Exception as exc:  # config and store errors read as one sentence
        fail(str(exc))
    _opened[:] = [ws.root]
    return ws


def opened_workspace() -> Path | None:
    """The folder of the workspace this command opened (where a full disk is, when the error
    names no file)."""
    return _opened[0] if _opened else None


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFn]:
    """A rich progress bar on stderr; each stage gets its own line."""
    if not enabled:
        yield lambda event: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(event: ProgressEvent) -> None:
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(event.stage, total=max(event.total, 1))
            bar.update(tasks[event.stage], completed=event.done, total=max(event.total, 1))

        yield update


def command_line() -> str:
    """This command as the user typed it (for the run lock's owner record)."""
    return "middo " + shlex.join(sys.argv[1:])


@contextmanager
def run_lock(ws: Workspace, kind: str) -> Iterator[None]:
    """Hold the workspace's run lock while this command writes models or datasets; refuse with
    who holds it and since when (middo_core.jobs.lock)."""
    from middo_core.jobs.lock import RunLocked, acquire, describe, release

    try:
        owner = acquire(ws, kind, command_line())
    except RunLocked as exc:
        fail(str(exc))
    if owner.get("reclaimed"):
        console.print(f"took over the workspace's run lock from {describe(owner['reclaimed'])}, "
                      "which no longer runs", markup=False)
    try:
        yield
    finally:
        release(ws)


def start_background(ws: Workspace, kind: str, iteration: int, args: dict[str, Any],
                     as_json: bool) -> None:
    """Start `kind` as a background job and say how to follow and stop it (or print its id)."""
    from middo_core.jobs import start_job
    from middo_core.jobs.lock import RunLocked

    try:
        run_id = start_job(ws, kind, iteration, args)
    except RunLocked as exc:
        fail(str(exc))
    if as_json:
        emit_json({"run_id": run_id})
        return
    results.print(f"Started {kind} job [bold]{run_id}[/bold] for iteration {iteration}. "
                  f"Follow it with `middo runs {ws.root}`; stop it with `middo cancel {ws.root} {run_id}`.")

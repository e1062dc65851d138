"""CLI subcommands, one module per area; each exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

# Order here is the order in `middo --help`.
MODULES = ["workspace", "data", "diagnose", "refine", "review", "diff", "train", "loop", "studio",
           "serve"]


def register_all(app: typer.Typer) -> None:
    for name in MODULES:
        try:
            module = importlib.import_module(f"middo_core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"middo_core.commands.{name}":
                continue  # area not built yet
            raise
        module.register(app)

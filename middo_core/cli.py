"""`middo`: the headless interface to Middo Studio. Subcommands live in middo_core/commands/."""

from __future__ import annotations

import typer

from middo_core.commands import register_all

app = typer.Typer(
    help="Middo Studio: diagnose, refine and grow SFT data in a closed loop with the model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # usage errors as plain lines, never boxed and wrapped to the terminal
)
register_all(app)

if __name__ == "__main__":
    app()

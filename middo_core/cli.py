"""`middo`: the headless interface to Middo Studio. Subcommands live in middo_core/commands/."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from middo_core.commands import register_all
from middo_core.commands.common import fail, opened_workspace
from middo_core.files import DamagedFile, disk_full, disk_full_message


class Commands(TyperGroup):
    """Every command: a full disk or a damaged file reads as one sentence, whichever step met it."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):  # a command's own ending (fail() included)
            raise
        except DamagedFile as exc:
            fail(str(exc))
        except Exception as exc:
            if not disk_full(exc):
                raise
            fail(disk_full_message(exc, opened_workspace()))


app = typer.Typer(
    cls=Commands,
    help="Middo Studio: diagnose, refine and grow SFT data in a closed loop with the model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # usage errors as plain lines, never boxed and wrapped to the terminal
)
register_all(app)

if __name__ == "__main__":
    app()

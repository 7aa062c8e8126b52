"""The ``xraycache`` command line: thin typer wrappers around the library, the only code that prints.

Commands are listed in the order a user meets them: build a cache, look at it, inspect how it was built,
list and export its images, check it, and make sample data to try all of this on. Each command imports the layer it calls only when it
runs, so ``--help`` and ``--version`` load neither the build stack nor matplotlib.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from ..about import show_version
from ._usage import TidyCommand, TidyGroup
from .build import build_command
from .duplicates import duplicates_command
from .export import export_command
from .info import info_command
from .ls import ls_command
from .sample import sample_command
from .show import show_app
from .verify import verify_command

QUIET_RESOURCE_TRACKER = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"
COMMAND_ORDER = ("build", "show", "info", "ls", "export", "verify", "duplicates", "sample")


class _InUserOrder(TidyGroup):
    """Lists the commands in the order a user meets them (typer would put the ``show`` group last)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The command list in click's plain format: rich's help formatter would import rich.markdown and
        # pygments (via rich.traceback), more than the rest of ``--help`` costs (``python -m benchmarks.hotpath
        # --sections startup`` counts its instructions). Each command's own --help (its options in panels) stays rich.
        self.rich_markup_mode = None

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(names))


app = typer.Typer(
    name="xraycache",
    cls=_InUserOrder,
    help="Turn a folder of chest X-rays into one HDF5 cache, in parallel, and look at it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        raise typer.Exit(show_version())


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and imaging backend, then exit."
        ),
    ] = False,
) -> None:
    """Turn a folder of chest X-rays into one HDF5 cache, in parallel, and look at it."""
    # After Ctrl-C, loky's resource-tracker process (a child, which reads this variable) warns about
    # the semaphores of the pool it was told to drop; the build already said "interrupted".
    os.environ.setdefault("PYTHONWARNINGS", QUIET_RESOURCE_TRACKER)


app.command("build", cls=TidyCommand)(build_command)
app.add_typer(show_app, name="show")
app.command("info", cls=TidyCommand)(info_command)
app.command("ls", cls=TidyCommand)(ls_command)
app.command("export", cls=TidyCommand)(export_command)
app.command("verify", cls=TidyCommand)(verify_command)
app.command("duplicates", cls=TidyCommand)(duplicates_command)
app.command("sample", cls=TidyCommand)(sample_command)

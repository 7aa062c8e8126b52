"""The ``xraycache`` command line: thin typer wrappers around the library, the only code that prints.

Commands are listed in the order a user meets them: build a cache, look at it, inspect how it was built,
list and export its images, check it, and make sample data to try all of this on. Each command imports the layer it calls only when it
runs, so ``--help`` and ``--version`` load neither the build stack nor matplotlib.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from ..core.version import __version__
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


def version_text() -> str:
    """The tool's version and the imaging/HDF5 stack it runs on."""
    from ..core.format import hdf5_versions
    from ..imaging.decoders import PLUGINS
    from ..imaging.kernel import kernel_name
    from ..imaging.stack import imaging_stack

    stack = imaging_stack()
    h5py_version, hdf5_version = hdf5_versions()
    decoders = ", ".join(p.NAME if p.available() else f"{p.NAME} (needs {p.REQUIRES})" for p in PLUGINS)
    return (
        f"xraycache {__version__}\n"
        f"imaging backend: {stack.imaging}\n"
        f"jpeg: {stack.libjpeg}\n"
        f"resize kernel: {kernel_name()}\n"
        f"decoders: {decoders}\n"
        f"h5py {h5py_version}, HDF5 {hdf5_version}"
    )


def _version(value: bool) -> None:
    if value:
        from ..imaging.pil_install import pil_problem  # no PIL import of its own: works when PIL is broken

        problem = pil_problem()
        if problem is not None and problem[1]:  # PIL unusable: say what can be said without it
            typer.echo(f"xraycache {__version__}")
            typer.echo(f"error: {problem[0]}", err=True)
            raise typer.Exit(1)
        typer.echo(version_text())
        if problem is not None:
            typer.echo(f"warning: {problem[0]}", err=True)
        raise typer.Exit()


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

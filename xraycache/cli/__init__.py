"""The ``xraycache`` command line: thin typer wrappers around the library."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import __version__
from ..backend import backend_info
from .build import build_command
from .sample import sample_command

QUIET_RESOURCE_TRACKER = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"

app = typer.Typer(
    name="xraycache",
    help="Turn a folder of chest X-rays into one HDF5 cache, in parallel, and look at it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def version_text() -> str:
    """The tool's version and the imaging/HDF5 stack it runs on."""
    info = backend_info()
    return (
        f"xraycache {__version__}\n"
        f"imaging backend: {info.imaging}\n"
        f"jpeg: {info.libjpeg}\n"
        f"h5py {info.h5py}, HDF5 {info.hdf5}"
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(version_text())
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


app.command("build")(build_command)
app.command("sample")(sample_command)

# readers (issue 4): `xraycache show VIEW FILE` and `xraycache info FILE`
from .info import info_command  # noqa: E402
from .show import show_app  # noqa: E402

app.add_typer(show_app, name="show")
app.command("info")(info_command)

# caching engine (issue 6): `xraycache verify FILE [SRC]`
from .verify import verify_command  # noqa: E402

app.command("verify")(verify_command)

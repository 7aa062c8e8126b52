"""``xraycache ls FILE [--split S] [--label L]``: one image a line, ``split  index  label  path``, tab-separated."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..core.escape import terminal
from ._common import cli_errors, open_for_reading, typed_back


def ls_command(
    file: Annotated[Path, typer.Argument(help="Cache file written by `xraycache build`.", show_default=False)],
    split: Annotated[str | None, typer.Option("--split", "-s", help="Only this split.", show_default=False)] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label", "-l", help="Only images with this label (multi-label: that have it).", show_default=False
        ),
    ] = None,
) -> None:
    """List the images of FILE, one a line: split, index, label, source path.

    Tab-separated, no header, for scripts; multi-label names are joined by |. Control characters, tabs,
    newlines and backslashes in a name are printed escaped (\x1b, \t, \n, \\); the path as printed
    is what `xraycache show image FILE --path PATH` takes."""
    from ..read.export import image_rows

    with cli_errors(), open_for_reading(file) as cache:
        try:
            split = typed_back(split, cache.splits) if split is not None else None
            label = typed_back(label, cache.label_names) if label is not None else None
            for row in image_rows(cache, split=split, label=label):
                sys.stdout.write(f"{terminal(row.split)}\t{row.index}\t{terminal(row.label)}\t{terminal(row.path)}\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `xraycache ls ... | head`: the reader has all it wanted
            sys.stdout = None  # no second error when Python flushes stdout at exit

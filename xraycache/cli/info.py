"""``xraycache info FILE``: how a cache was built (attributes), its splits and sizes, and the files it skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import cli_errors, console, open_for_reading, print_leakage, said, shown

SHOWN_FIRST = ("format", "format_version", "tool_version", "created", "command", "source_root", "layout")


def info_command(
    file: Annotated[
        Path, typer.Argument(help="Cache file written by `xraycache build`, e.g. train.h5.", show_default=False)
    ],
    limit: Annotated[int, typer.Option(min=0, help="Skipped files to list (all are in the file's /skipped).")] = 20,
) -> None:
    """Print how FILE was built (its attributes), its splits with image counts per class, and skipped files."""
    with cli_errors(), open_for_reading(file) as cache:
        skipped, leaks = cache.skipped, cache.leakage()  # read all before printing: a bad part is one line
        attrs = Table(title=f"{shown(cache.path)} ({cache.path.stat().st_size / 1e6:,.1f} MB)", title_justify="left")
        attrs.add_column("attribute", style="bold")
        attrs.add_column("value", overflow="fold")
        for key in [*(k for k in SHOWN_FIRST if k in cache.attrs), *sorted(set(cache.attrs) - set(SHOWN_FIRST))]:
            value = cache.attrs[key]
            text = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            attrs.add_row(shown(key), shown(text))
        console.print(attrs)
        splits = Table(title="splits", title_justify="left")
        splits.add_column("split")
        splits.add_column("images (N x H x W)")
        for name in cache.label_names:
            splits.add_column(shown(name), justify="right")
        splits.add_column("MB", justify="right")
        for name in cache.splits:
            split = cache[name]
            shape = " x ".join(f"{s:,}" for s in split.shape)
            counts = split.counts()
            nbytes = split.shape[0] * int(split.shape[1]) * int(split.shape[2])
            splits.add_row(shown(name), shape, *(f"{c:,}" for c in counts), f"{nbytes / 1e6:,.1f}")
        console.print(splits)
        print_leakage(leaks)
    if not skipped:
        console.print("skipped files: none")
        return
    table = Table(title=f"skipped {len(skipped)} file(s)", title_justify="left", title_style="yellow")
    for column in ("file", "split", "reason"):
        table.add_column(column, overflow="fold")
    for row in skipped[:limit]:
        table.add_row(shown(row.path), shown(row.split or "-"), said(row.reason))
    if len(skipped) > limit:
        table.add_row(f"... and {len(skipped) - limit} more", "", "use --limit to list more")
    console.print(table)

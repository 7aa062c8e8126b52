"""``xraycache duplicates FILE``: the groups of near-duplicate images in a cache, across splits first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..core.limits import DUPLICATES_SEARCH_IMAGES
from ._common import cli_errors, console, open_for_reading, said, shown


def duplicates_command(
    file: Annotated[Path, typer.Argument(help="Cache file written by `xraycache build`.", show_default=False)],
    limit: Annotated[int, typer.Option(min=1, help="Groups to print (all are in --json).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the pairs and groups as JSON.")] = False,
    max_images: Annotated[
        int,
        typer.Option(
            min=2,
            help="Search caches of at most this many images (the search grows with the square of the count: "
            "about 40 s at 100,000).",
        ),
    ] = DUPLICATES_SEARCH_IMAGES,
) -> None:
    """List the groups of near-duplicate images in FILE, across splits first.

    A near-duplicate is the same radiograph again: re-encoded, resized, brightened or cropped a little
    (identical files count too). A group across splits is leakage: `xraycache build --drop-duplicates`
    keeps one image per group, `--resplit` keeps each group in one split."""
    with cli_errors(), open_for_reading(file) as cache:
        report = cache.leakage(max_images)
    if report.near_duplicates_unavailable:
        if as_json:
            print(json.dumps({"unavailable": report.near_duplicates_unavailable}))
        else:
            console.print(
                f"{shown(file)}: near-duplicates not searched: {said(report.near_duplicates_unavailable)}",
                highlight=False,
            )
        raise typer.Exit(2)
    data = report.to_dict()
    if as_json:
        keys = ("threshold", "near_duplicates", "near_duplicate_groups", "near_duplicate_pairs_across_splits")
        print(json.dumps({key: data[key] for key in keys}, indent=2))
        return
    groups = sorted(report.near_duplicate_groups, key=lambda g: (len({s for s, _ in g}) == 1, g))
    across = sum(1 for g in groups if len({s for s, _ in g}) > 1)
    style = "yellow" if across else "green"
    console.print(
        f"[{style}]{len(groups)} group(s) of near-duplicates[/] in {report.images:,} images, {across} across splits "
        f"(score >= {report.threshold:.2f}; identical files included)",
        highlight=False,
    )
    if not groups:
        return
    table = Table(show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("splits")
    table.add_column("images", overflow="fold")
    for number, group in enumerate(groups[:limit], 1):
        splits = ", ".join(dict.fromkeys(shown(split) for split, _ in group))
        table.add_row(str(number), splits, "\n".join(f"{shown(path)} ({shown(split)})" for split, path in group))
    if len(groups) > limit:
        table.add_row("", "", f"... and {len(groups) - limit} more (--limit, or --json for all)")
    console.print(table)

"""``xraycache verify OUT.h5 [SRC]``: is the cache sound, and does it still match its sources?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ._common import cli_errors, console, said, shown

if TYPE_CHECKING:
    from ..verify import VerifyReport


def verify_command(
    file: Annotated[Path, typer.Argument(help="Cache file written by `xraycache build`.", show_default=False)],
    src: Annotated[
        Path | None, typer.Argument(help="Source folder to compare with (re-hashes every file).", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows of the table of differences to print.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check FILE on its own (counts, shapes, dtypes, per-image checksums, statistics) and, given SRC,
    list the source files that are missing, new or changed since the build. Exit 0: all agrees; 1: not."""
    from ..verify import verify

    with cli_errors():
        report = verify(file, src)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, limit)
    raise typer.Exit(0 if report.ok else 1)


def print_report(report: VerifyReport, limit: int) -> None:
    """One line when all agrees; a table of the differences otherwise."""
    scope = f"{shown(report.out)} against {shown(report.src)}" if report.src else shown(report.out)
    for note in report.unchecked:
        console.print(f"[yellow]note:[/] {said(note)}", highlight=False)
    if report.near_duplicates_across is not None:
        across, within = report.near_duplicates_across, report.near_duplicates_within
        style = "yellow" if across else "dim"
        console.print(
            f"[{style}]near-duplicates:[/] {across} pair(s) across splits, {within} within a split "
            f"(leakage, not damage: `xraycache duplicates {shown(report.out)}` lists them)",
            highlight=False,
        )
    if report.near_duplicates_unsearched:
        console.print(
            f"[dim]near-duplicates: not searched: {said(report.near_duplicates_unsearched)}[/]", highlight=False
        )
    if report.ok:
        console.print(
            f"[green]ok[/]: {scope}: {report.images:,} images in {len(report.splits)} split(s) agree", highlight=False
        )
        return
    findings = report.findings()
    table = Table(title=f"{scope}: {len(findings)} difference(s)", title_justify="left", title_style="red")
    table.add_column("where", overflow="fold")
    table.add_column("kind")
    table.add_column("detail", overflow="fold")
    for finding in findings[:limit]:
        table.add_row(shown(finding.where), finding.kind, said(finding.detail))
    if len(findings) > limit:
        table.add_row(f"... and {len(findings) - limit} more", "", "(--limit, or --json for all)")
    console.print(table)

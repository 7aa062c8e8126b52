"""What every command shares: the consoles, one-line errors, progress bars and the leakage section.

Every name from a source folder or a cache (split, class, file, patient) and every message that may hold
one reaches rich through ``core.escape``: :func:`shown` for a name (control characters escaped, reversibly,
and its ``[tags]`` printed, not obeyed), :func:`said` for a message. The consoles replace no ``:emoji:`` codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..core.errors import XrayCacheError
from ..core.escape import markup, shown, terminal, unterminal

if TYPE_CHECKING:
    from ..analysis.leakage import LeakageReport
    from ..read.cache import Cache

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def said(message: str) -> str:
    """A message (an error, a warning, a reason) for rich markup: control characters shown, tags not obeyed."""
    return markup(terminal(message, reversible=False))


def typed_back(value: str, known: Iterable[str]) -> str:
    """``value`` as the name it is among ``known``: as typed, or as ``xraycache ls`` printed it (escaped).

    A name that holds control characters or backslashes is printed escaped (``core.escape.terminal``); a
    user who pastes that form back gets the name it stands for. Otherwise ``value`` unchanged (the caller
    reports it when it is no name).
    """
    names = set(known)
    if value in names:
        return value
    try:
        original = unterminal(value)
    except ValueError:
        return value
    return original if original in names else value


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the package's errors into one line on stderr and its exit code; Ctrl-C into 130."""
    try:
        yield
    except XrayCacheError as exc:
        err_console.print(f"[bold red]error:[/] {said(exc.for_cli())}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: nothing was written", highlight=False)
        raise typer.Exit(130) from None


class ProgressBar:
    """A rich progress task: call it to advance, ``set_total`` once the number of items is known."""

    def __init__(self, progress: Progress, description: str, total: int | None) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total, rate="")

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def __call__(self, n: int) -> None:
        self._progress.advance(self._task, n)
        speed = self._progress.tasks[self._task].speed
        self._progress.update(self._task, rate=f"{speed:,.0f} img/s" if speed else "")


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool) -> Iterator[ProgressBar | None]:
    """A rich progress bar (images/s, ETA) on a terminal; nothing when not a TTY or disabled.

    ``total=None`` starts an open-ended bar whose total the caller sets later (``set_total``).
    """
    if not enabled or not err_console.is_terminal or total == 0:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield ProgressBar(progress, description, total)


def print_leakage(report: LeakageReport, limit: int = 10) -> None:
    """The leakage section of ``show stats`` / ``info``: a summary line, then the worst offenders."""
    leaks = report.patients_in_several_splits
    across, within = report.duplicates_across, report.duplicates_within
    style = "yellow" if report.leaks else "green"
    console.print(
        f"[{style}]leakage:[/] {len(leaks)} of {report.patients:,} patients in more than one split; "
        f"{len(across)} duplicate group(s) across splits, {len(within)} within a split "
        f"(same sha256); {report.images_without_patient:,} image(s) without a patient id",
        highlight=False,
    )
    if leaks:
        table = Table(title="patients in more than one split", title_justify="left", title_style="yellow")
        table.add_column("patient")
        table.add_column("images per split")
        for leak in leaks[:limit]:
            table.add_row(shown(leak.patient), ", ".join(f"{shown(s)}: {n}" for s, n in leak.splits.items()))
        if len(leaks) > limit:
            table.add_row(f"... and {len(leaks) - limit} more", "(all in --json)")
        console.print(table)
    if report.duplicates:
        table = Table(title="identical files (same sha256)", title_justify="left", title_style="yellow")
        table.add_column("where")
        table.add_column("files")
        for group in (across + within)[:limit]:
            files = ", ".join(f"{shown(path)} ({shown(split)})" for split, path in group.images[:limit])
            if len(group.images) > limit:
                files += f", ... and {len(group.images) - limit:,} more"
            table.add_row("across splits" if group.across_splits else "within a split", files)
        if len(report.duplicates) > limit:
            table.add_row(f"... and {len(report.duplicates) - limit} more", "(all in --json)")
        console.print(table)
    print_near_duplicates(report, limit)


def print_near_duplicates(report: LeakageReport, limit: int = 10) -> None:
    """The near-duplicate lines of the leakage section: a count, then the closest pairs across splits first."""
    if report.near_duplicates_unavailable:
        console.print(
            f"[dim]near-duplicates: not searched: {said(report.near_duplicates_unavailable)}[/]", highlight=False
        )
        return
    pairs = report.near_duplicates
    across = report.near_duplicates_across
    style = "yellow" if across else "green"
    console.print(
        f"[{style}]near-duplicates:[/] {len(across)} pair(s) across splits, {len(pairs) - len(across)} within a "
        f"split (the same exposure re-encoded, resized or cropped, verified on the pixels; score >= "
        f"{report.threshold:.2f}, identical files not counted)",
        highlight=False,
    )
    if not pairs:
        return
    table = Table(title="near-duplicate images", title_justify="left", title_style="yellow")
    table.add_column("score", justify="right")
    table.add_column("image", overflow="fold")
    table.add_column("looks like", overflow="fold")
    for pair in pairs[:limit]:
        table.add_row(
            f"{pair.score:.3f}", f"{shown(pair.a[1])} ({shown(pair.a[0])})", f"{shown(pair.b[1])} ({shown(pair.b[0])})"
        )
    if len(pairs) > limit:
        table.add_row("", f"... and {len(pairs) - limit} more", "(all in --json, or xraycache duplicates)")
    console.print(table)


def open_for_reading(path: Path) -> Cache:
    """``xraycache.open``, imported when a command first reads a cache (``--help`` needs no h5py)."""
    from ..read.cache import open as open_file

    return open_file(path)

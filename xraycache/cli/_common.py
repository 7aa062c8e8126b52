"""What every command shares: the consoles, one-line errors, and progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import XrayCacheError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the package's errors into one line on stderr and its exit code; Ctrl-C into 130."""
    try:
        yield
    except XrayCacheError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
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

"""``xraycache show VIEW FILE``: one sub-command per view; each parses, calls the library, writes, prints the path."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from ..core.errors import InputError
from ..core.escape import unterminal
from ..core.options import BuildOptions
from ._common import cli_errors, console, open_for_reading, print_leakage, said, shown, typed_back
from ._usage import TidyCommand, TidyGroup

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..core.errors import Skipped
    from ..read.cache import Cache
    from ..read.stats import CacheStats

STATS_COLUMNS = ("class", "images", "share", "min", "max", "mean", "std", "width px", "height px")
ALWAYS_SHOWN = (
    "size",
    "fit",
    "filter",
    "classes",
    "compression",
    "max_pixels",
)  # other settings only when not the default


def _figures() -> ModuleType:
    """xraycache.read.figures, imported on first use: matplotlib's start-up is a cost other commands skip."""
    return importlib.import_module("xraycache.read.figures")


def _html_report() -> ModuleType:
    """xraycache.read.html_report, imported on first use (it draws every figure)."""
    return importlib.import_module("xraycache.read.html_report")


show_app = typer.Typer(
    name="show",
    cls=TidyGroup,
    help="Look at a cache: statistics, one image, histograms, class counts, a random grid, a report.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

FileArg = Annotated[
    Path, typer.Argument(help="Cache file written by `xraycache build`, e.g. train.h5.", show_default=False)
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Figure to write, .png, .pdf or .svg (the suffix picks the format); default FILE-stem-VIEW.png here.",
        show_default=False,
    ),
]
DEFAULT_DPI = 150  # = read.figures.DEFAULT_DPI, written out so that --help loads no plotting code
DpiOpt = Annotated[
    int,
    typer.Option("--dpi", min=30, max=1200, help="Dots per inch of PNG figures (and of the images in a PDF or SVG)."),
]
SplitOpt = Annotated[str | None, typer.Option("--split", "-s", help="Split to show (default: the first, e.g. train).")]


def _out(file: Path, view: str, out: Path | None, report: bool = False) -> Path:
    """Where a view goes: ``--out`` (refused before any work unless its suffix names a format), else a default."""
    if out is None:
        return Path.cwd() / f"{file.stem}-{view}.{'html' if report else 'png'}"
    figures = _figures()
    figures.output_format(out, _html_report().REPORT_FORMATS if report else figures.FIGURE_FORMATS)
    return out


def _split_name(cache: Cache, split: str | None) -> str:
    """``--split`` as the split it names (also as ``ls`` printed it), else the first split holding images."""
    return typed_back(split, cache.splits) if split is not None else _figures().first_with_images(_nonempty(cache)).name


def _nonempty(cache: Cache) -> Cache:
    """The cache, or InputError when it holds no split (every file of its build was skipped)."""
    if not cache.splits:
        raise InputError(f"{cache.path} holds no images (every file of its build was skipped); nothing to draw")
    return cache


def _write(fig: Figure, path: Path, dpi: int) -> None:
    written = _figures().save(fig, path, dpi=dpi)
    console.print(shown(written), highlight=False, soft_wrap=True)


@show_app.command("stats", cls=TidyCommand)
def stats_command(
    file: FileArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON, for scripts.")] = False,
) -> None:
    """Per split and class: count, share, imbalance, pixel min/max/mean/std, original sizes; skipped files.

    Read from the histograms and meta the build stored: instant, no pass over the pixels.
    """
    from ..read.stats import summarize

    with cli_errors(), open_for_reading(file) as cache:
        stats = summarize(cache)
        leaks = cache.leakage()
        dtype = str(cache.attrs.get("dtype", "uint8"))  # --dtype uint16: statistics on the high-byte scale
    if as_json:
        print(json.dumps({**stats.to_dict(), "leakage": leaks.to_dict()}, indent=2))
        return
    defaults = BuildOptions().settings()
    settings = ", ".join(f"{k}={v}" for k, v in stats.settings.items() if k in ALWAYS_SHOWN or v != defaults.get(k, v))
    shape = " x ".join(str(s) for s in stats.image_shape[::-1])
    console.print(f"[bold]{shown(stats.path)}[/]: {shape} px {dtype} images; {said(settings)}", highlight=False)
    for s in stats.splits:
        title = f"{shown(s.split)}: {s.count:,} images, imbalance {s.imbalance:.2f} (largest/smallest class)"
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            collapse_padding=True,
        )
        rows = [
            [
                *g.cells(),
                _span(g.width_min, g.width_max),
                _span(g.height_min, g.height_max),
            ]
            for g in [*s.classes, s.total]
        ]
        for i, column in enumerate(STATS_COLUMNS):
            if column == "class":  # the one column that may wrap on a narrow terminal
                table.add_column(column, overflow="fold")
            else:  # numbers are never cut: at least as wide as their widest value
                widest = max(len(column), *(len(row[i]) for row in rows))
                table.add_column(column, justify="right", no_wrap=True, min_width=widest)
        for row, g in zip(rows, [*s.classes, s.total], strict=True):
            table.add_row(shown(row[0]), *row[1:], style="bold" if g is s.total else None)
        console.print(table)
    _print_label_states(stats)
    console.print(
        "min/max/mean/std: pixel values (0-255"
        + (", the high byte of uint16" if dtype == "uint16" else "")
        + ") of the stored images; width/height: of the originals",
        style="dim",
    )
    _print_skipped(stats.skipped)
    print_leakage(leaks)


def _print_label_states(stats: CacheStats) -> None:
    """Coded labels: per split and label, the images positive, negative, uncertain and missing."""
    from ..read.report_text import STATE_COLUMNS, state_rows

    rows = state_rows(stats)
    if not rows:
        return
    table = Table(
        title="coded labels (the class counts above are the positives)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    for column in STATE_COLUMNS:
        if column == "label":
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(shown(row[0]), shown(row[1]), *row[2:])
    console.print(table)


def _span(low: int, high: int) -> str:
    """``1024-3056``, or ``1024`` when every image had the same size."""
    return str(low) if low == high else f"{low}-{high}"


def _print_skipped(skipped: list[Skipped], limit: int = 20) -> None:
    if not skipped:
        console.print("skipped files: none")
        return
    table = Table(title=f"skipped {len(skipped)} file(s)", title_justify="left", title_style="yellow")
    for column in ("file", "split", "reason"):
        table.add_column(column)
    for row in skipped[:limit]:
        table.add_row(shown(row.path), shown(row.split), said(row.reason))
    if len(skipped) > limit:
        table.add_row(f"... and {len(skipped) - limit} more", "", "see `xraycache info`")
    console.print(table)


@show_app.command("image", cls=TidyCommand)
def image_command(
    file: FileArg,
    split: SplitOpt = None,
    index: Annotated[int, typer.Option("--index", "-i", help="Image number within the split.")] = 0,
    path: Annotated[
        str | None,
        typer.Option("--path", help="Pick the image by its source path instead, e.g. train/NORMAL/IM-0133-0001.jpeg."),
    ] = None,
    out: OutOpt = None,
    dpi: DpiOpt = DEFAULT_DPI,
) -> None:
    """One image with a colorbar and its size/min/max/mean/std, and its pixel histogram beside it."""
    with cli_errors():
        target = _out(file, "image", out)
        with open_for_reading(file) as cache:
            if path is not None:
                name, index = _locate(cache, path)
            else:
                name = _split_name(cache, split)
            _write(_figures().image(cache[name], index), target, dpi)


def _locate(cache: Cache, path: str) -> tuple[str, int]:
    """``cache.locate(path)``, also for a path as ``xraycache ls`` printed it (control characters escaped)."""
    try:
        return cache.locate(path)
    except InputError:
        try:
            original = unterminal(path)
        except ValueError:
            original = path
        if original == path:
            raise
        return cache.locate(original)


@show_app.command("hist", cls=TidyCommand)
def hist_command(
    file: FileArg,
    split: Annotated[
        str | None, typer.Option("--split", "-s", help="Only this split (default: one curve per split).")
    ] = None,
    by_class: Annotated[bool, typer.Option("--by-class", help="One curve per class instead of per split.")] = False,
    log: Annotated[bool, typer.Option("--log", help="Logarithmic y axis (shows rare dark and bright values).")] = False,
    out: OutOpt = None,
    dpi: DpiOpt = DEFAULT_DPI,
) -> None:
    """Pixel value histograms, from the histograms the build stored (no pass over the pixels)."""
    with cli_errors():
        target = _out(file, "hist", out)
        with open_for_reading(file) as cache:
            split = typed_back(split, cache.splits) if split is not None else None
            _write(_figures().hist(_nonempty(cache), split=split, by_class=by_class, log=log), target, dpi)


@show_app.command("counts", cls=TidyCommand)
def counts_command(file: FileArg, out: OutOpt = None, dpi: DpiOpt = DEFAULT_DPI) -> None:
    """Bar chart of images per class and split, with the count and share on each bar."""
    with cli_errors():
        target = _out(file, "counts", out)
        with open_for_reading(file) as cache:
            _write(_figures().counts(_nonempty(cache)), target, dpi)


@show_app.command("grid", cls=TidyCommand)
def grid_command(
    file: FileArg,
    n: Annotated[int, typer.Option("--n", min=1, max=100, help="Number of images.")] = 9,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed shows the same images.")] = 0,
    split: SplitOpt = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="Only images of this class, e.g. normal.")] = None,
    out: OutOpt = None,
    dpi: DpiOpt = DEFAULT_DPI,
) -> None:
    """A grid of random images, with label and patient above each."""
    with cli_errors():
        target = _out(file, "grid", out)
        with open_for_reading(file) as cache:
            label = typed_back(label, cache.label_names) if label is not None else None
            _write(_figures().grid(cache[_split_name(cache, split)], n=n, seed=seed, label=label), target, dpi)


@show_app.command("report", cls=TidyCommand)
def report_command(
    file: FileArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="x.html (self-contained page; default FILE-stem-report.html here), or one x.png, x.pdf or x.svg figure.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the grid.")] = 0,
    dpi: DpiOpt = DEFAULT_DPI,
) -> None:
    """Every view on one page: statistics, leakage, skipped files and every figure; HTML, or one PNG/PDF/SVG figure.

    The format follows the suffix of --out: .html (a self-contained page with embedded PNGs), .png, .pdf or .svg.
    """
    with cli_errors():
        target = _out(file, "report", out, report=True)
        with open_for_reading(file) as cache:
            written = _html_report().write_report(_nonempty(cache), target, seed=seed, dpi=dpi)
    console.print(shown(written), highlight=False, soft_wrap=True)

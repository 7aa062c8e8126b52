"""The notebook's figures, from a cache: one image, pixel histograms, class counts, a random grid, all in one.

Every function returns a matplotlib Figure drawn on the Agg canvas (headless, no pyplot state), so they
work the same from Python, in a notebook and behind ``xraycache show``. Images use the gray colormap
with a fixed display range 0 (black) to 255 (white), stated on each figure, so brightness compares
across images. Histograms come from the histograms the build stored: no pass over the pixels. Every name
drawn (split, class, patient, path) goes through ``core.escape.mathtext``: a ``$`` in it is drawn, never
read as mathtext.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.atomic import write_output
from ..core.errors import InputError
from ..core.escape import mathtext
from ..core.pixels import hist_moments
from .cache import Cache, Split
from .report_text import MULTI_LABEL_NOTE, STATS_COLUMNS, leakage_summary, shares_over_100, stats_rows
from .stats import CacheStats, split_hist, summarize

if TYPE_CHECKING:  # matplotlib itself is imported when the first figure is drawn (~0.5 s)
    from typing import TypeAlias

    from matplotlib.figure import Figure, SubFigure

    from ..analysis.leakage import LeakageReport

    Canvas: TypeAlias = Figure | SubFigure

GRAY: dict[str, Any] = {"cmap": "gray", "vmin": 0, "vmax": 255, "interpolation": "nearest"}


RANGE_NOTE = "gray colormap, display range 0 (black) to 255 (white)"


PIXEL_AXIS = "pixel value (0 = black, 255 = white)"


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


DEFAULT_DPI = 150  # sharp on a laptop screen and in a paper; --dpi changes it


FIGURE_FORMATS = (".png", ".pdf", ".svg")  # what --out may end in: matplotlib picks the format by suffix


def output_format(out: str | os.PathLike[str], formats: tuple[str, ...] = FIGURE_FORMATS) -> str:
    """The format ``out`` asks for by its suffix (``.png`` ...), or InputError naming the suffixes that work."""
    suffix = Path(out).suffix.lower()
    if suffix not in formats:
        said = f"ends in {suffix!r}" if suffix else "has no suffix"
        wanted = ", ".join(formats[:-1]) + f" or {formats[-1]}"
        raise InputError(f"--out {os.fspath(out)} {said}; give a file name ending in {wanted}")
    return suffix


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DEFAULT_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out: str | os.PathLike[str], dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` as PNG, PDF or SVG, by the suffix of ``out``; InputError for another suffix or an unwritable OUT.

    Written through ``core.atomic.write_output``: a link planted at OUT is replaced, never followed.
    """
    path = Path(out)
    suffix = output_format(path)
    try:
        write_output(path, lambda tmp: fig.savefig(tmp, format=suffix[1:], dpi=dpi, facecolor="white"))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise InputError(f"cannot write {path}: {reason}; give --out a writable path") from None
    return path


def _display(pixels: np.ndarray) -> np.ndarray:
    """Pixels on the 0-255 display scale: uint16 images (--dtype uint16) by their high byte."""
    return (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels


def _fmt_label(split: Split, index: int) -> tuple[str, str]:
    """The label (``a|b`` when multi-label) and the patient id (``""`` when the image has none), as drawn."""
    row = split.labels[index]
    if row.ndim == 1:  # multi-label (N, C) multi-hot
        label = "|".join(name for name, on in zip(split.label_names, row, strict=True) if on == 1) or "(none)"
    else:
        label = split.label_names[int(row)]
    return mathtext(label), mathtext(str(split.meta["patient"][index]))


def _clip_end_spikes(ax: Any, curves: np.ndarray, unit: str) -> None:
    """Scale the y axis to values 1-254 when pure black/white bins (borders, labels) would flatten the rest.

    The clipped bins are named under the x axis, so nothing is hidden.
    """
    inner = float(curves[:, 1:255].max()) if curves.size else 0.0
    ends = {v: float(curves[:, v].max()) for v in (0, 255)}
    if inner <= 0 or max(ends.values()) <= 1.6 * inner:
        return
    top = 1.25 * inner
    ax.set_ylim(0, top)
    clipped = [
        f"value {v} = {h:,.2f}{unit}" if h < 100 else f"value {v} = {h:,.0f}{unit}" for v, h in ends.items() if h > top
    ]
    ax.set_xlabel(f"{ax.get_xlabel()}\n(off the y scale: " + "; ".join(clipped) + ")")


def _draw_image(fig: Canvas, split: Split, index: int) -> None:
    n = len(split)
    if not -n <= index < n:
        raise InputError(f"index {index} is out of range for split {split.name!r} of {n} images; use 0 to {n - 1}")
    index %= n
    pixels = _display(split.images[index])
    label, patient = _fmt_label(split, index)
    meta = split.meta
    ax_img, ax_hist = fig.subplots(1, 2, width_ratios=[1, 1.25])
    shown = ax_img.imshow(pixels, **GRAY)
    ax_img.set_title(f"stored image, {pixels.shape[1]} x {pixels.shape[0]} px", fontsize=10)
    ax_img.set_xlabel("x (px)")
    ax_img.set_ylabel("y (px)")
    bar = fig.colorbar(shown, ax=ax_img, shrink=0.85)
    bar.set_label("pixel value (0-255)")
    counts = np.bincount(pixels.reshape(-1), minlength=256)
    ax_hist.bar(np.arange(256), counts, width=1.0, color="0.35")
    lo, hi, mean, std = hist_moments(counts)
    ax_hist.axvline(mean, color="#d62728", lw=1.2, label=f"mean {mean:.1f}")
    ax_hist.axvspan(mean - std, mean + std, color="#d62728", alpha=0.12, label=f"mean ± std ({std:.1f})")
    ax_hist.set_xlim(-2, 257)
    ax_hist.set_xlabel(PIXEL_AXIS)
    _clip_end_spikes(ax_hist, counts[None, :].astype(float), " pixels")
    ax_hist.set_ylabel("pixels (count)")
    ax_hist.set_title(f"pixel histogram: min {lo}, max {hi}, mean {mean:.1f}, std {std:.1f}", fontsize=10)
    ax_hist.legend(loc="upper left", fontsize=8, frameon=False)
    ax_hist.grid(axis="y", alpha=0.3)
    mode = str(meta["mode"][index])
    kind = {"L": "8-bit gray", "RGB": "RGB color", "I;16": "16-bit gray", "LA": "gray + alpha"}.get(
        mode, f"mode {mode}"
    )
    original = f"{int(meta['width'][index])} x {int(meta['height'][index])} px, {kind}"
    who = f", patient {patient}" if patient else ""
    fig.suptitle(
        f"{mathtext(split.name)}[{index}]: {label}{who}\nsource {mathtext(str(meta['path'][index]))} "
        f"(original {original}); {RANGE_NOTE}",
        fontsize=10,
    )


def image(split: Split, index: int) -> Figure:
    """One image with a colorbar and its size/min/max/mean/std, and its pixel histogram beside it."""
    fig = _figure(11, 4.6)
    _draw_image(fig, split, index)
    return fig


def _draw_hist(fig: Canvas, cache: Cache, split: str | None, by_class: bool, log: bool) -> None:
    names = [split] if split is not None else list(cache.splits)
    if split is not None:
        cache[split]
    stored = {name: split_hist(cache[name]) for name in names}
    curves: list[tuple[str, np.ndarray, int]] = []
    if by_class:
        total = sum(stored.values())
        for i, label in enumerate(cache.label_names):
            n_images = sum(int(cache[name].counts()[i]) for name in names)
            curves.append((mathtext(label), np.asarray(total)[i], n_images))
    else:
        for name in names:
            curves.append((mathtext(name), stored[name].sum(axis=0), len(cache[name])))
    ax = fig.subplots()
    x = np.arange(256)
    shares: list[np.ndarray] = []
    for k, (name, hist, n_images) in enumerate(curves):
        pixels = hist.sum()
        if pixels == 0:
            continue
        _, _, mean, std = hist_moments(hist)
        share = 100.0 * hist / pixels
        ax.plot(
            x,
            share,
            color=COLORS[k % len(COLORS)],
            lw=1.4,
            label=f"{name}: {n_images:,} images, mean {mean:.1f}, std {std:.1f}",
        )
        shares.append(share)
    ax.set_xlim(0, 255)
    ax.set_xlabel(PIXEL_AXIS)
    if shares and not log:
        _clip_end_spikes(ax, np.array(shares), "% of pixels")
    ax.set_ylabel("share of pixels (%)" + (", log scale" if log else ""))
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", frameon=False)
    scope = "all splits" if len(names) > 1 else f"split {mathtext(names[0])}"
    what = f"per class, {scope}" if by_class else "per split" if len(names) > 1 else f"of {scope}"
    ax.set_title(f"Pixel value distribution {what}; each curve sums to 100%", fontsize=10)


def hist(cache: Cache, split: str | None = None, by_class: bool = False, log: bool = False) -> Figure:
    """Pixel histograms from the stored per-class histograms: one curve per split, or per class."""
    fig = _figure(8.5, 4.6)
    _draw_hist(fig, cache, split, by_class, log)
    return fig


def _draw_counts(fig: Canvas, cache: Cache) -> None:
    labels = [mathtext(name) for name in cache.label_names]
    splits = list(cache.splits)
    ax = fig.subplots()
    width = 0.8 / max(1, len(splits))
    x = np.arange(len(labels))
    top = 1
    over = False  # multi-label: some split's shares add to more than 100%
    for k, name in enumerate(splits):
        counts = cache[name].counts()
        total = max(1, len(cache[name]))  # images, not label counts: a multi-label image counts once per label
        over = over or int(counts.sum()) > len(cache[name])
        bars = ax.bar(
            x + (k - (len(splits) - 1) / 2) * width, counts, width, color=COLORS[k % len(COLORS)], label=mathtext(name)
        )
        ax.bar_label(bars, [f"{c:,}\n{100 * c / total:.0f}%" for c in counts], fontsize=8, padding=2)
        top = max(top, int(counts.max()) if counts.size else 0)
    ax.set_xticks(x, labels)
    ax.set_xlabel("class")
    ax.set_ylabel("images (count)")
    ax.set_ylim(0, top * 1.22)
    ax.legend(title="split", fontsize=8, frameon=False, loc="upper left", ncols=max(1, len(splits)))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Images per class and split (count, and % of the split)", fontsize=10)
    if over:
        ax.set_xlabel(f"class\n({MULTI_LABEL_NOTE})")


def counts(cache: Cache) -> Figure:
    """Bar chart of images per class and split, with the count and share on each bar."""
    fig = _figure(7.5, 4.6)
    _draw_counts(fig, cache)
    return fig


def _draw_grid(fig: Canvas, split: Split, n: int, seed: int, label: str | int | None) -> None:
    if n < 1:
        raise InputError(f"n={n}: a grid needs at least 1 image")
    pool = np.arange(len(split))
    what = f"split {mathtext(split.name)}"
    if label is not None:
        value = split.label_index(label)
        pool = np.flatnonzero(split.labels[:, value] == 1 if split.labels.ndim == 2 else split.labels == value)
        what += f", label {mathtext(split.label_names[value])}"
    if pool.size == 0:
        raise InputError(f"no images in {what}; try another --split or --label")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, size=min(n, pool.size), replace=False))
    pixels = _display(split.images[chosen])
    cols = int(np.ceil(np.sqrt(len(chosen))))
    rows = int(np.ceil(len(chosen) / cols))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
    for ax, index, img in zip(axes, chosen, pixels, strict=False):
        lab, patient = _fmt_label(split, int(index))
        ax.imshow(img, **GRAY)  # no colour bar: the fixed display range is stated in the title
        ax.set_title(f"{lab}\npatient {patient} (#{index})" if patient else f"{lab}\n#{index}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(chosen) :]:
        ax.axis("off")
    side = pixels.shape[1:] if pixels.ndim == 3 else ()
    size = f"{side[1]} x {side[0]} px each" if side else ""
    fig.suptitle(
        f"{len(chosen)} random images from {what} (seed {seed}; {size})\n{RANGE_NOTE}",
        fontsize=10,
    )


def grid(split: Split, n: int = 9, seed: int = 0, label: str | int | None = None) -> Figure:
    """A random grid of ``n`` images (optionally of one label), with label and patient in each title."""
    cols = int(np.ceil(np.sqrt(max(1, n))))
    rows = int(np.ceil(max(1, n) / cols))
    fig = _figure(2.3 * cols + 0.4, 2.6 * rows + 0.9)
    _draw_grid(fig, split, n, seed, label)
    return fig


def first_with_images(cache: Cache) -> Split:
    """The first split that holds an image (``--drop-duplicates`` or ``--resplit`` can empty one), else the first."""
    return next((cache[name] for name in cache.splits if len(cache[name])), cache[cache.splits[0]])


def _subfigures(parent: Canvas, rows: int, cols: int, **kwargs: Any) -> list[SubFigure]:
    """``parent.subfigures`` as a flat list (matplotlib returns an array, or one SubFigure)."""
    return list(np.atleast_1d(np.asarray(parent.subfigures(rows, cols, **kwargs), dtype=object)).reshape(-1))


def _draw_stats(fig: Canvas, stats: CacheStats, leaks: LeakageReport) -> None:
    """The statistics table of ``show stats``, then one line each on leakage and skipped files."""
    from matplotlib.transforms import Bbox

    ax = fig.subplots()
    ax.axis("off")
    rows = stats_rows(stats)
    notes = [leakage_summary(leaks)]
    skipped = stats.skipped
    listed = ", ".join(mathtext(f"{s.path} ({s.reason})") for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
    notes.append(f"skipped files: {len(skipped):,}" + (f": {listed}" if skipped else ""))
    if shares_over_100(stats):
        notes.append(MULTI_LABEL_NOTE)
    text_share = 0.1 * len(notes) * 13 / (len(rows) + 3)
    table = ax.table(
        cellText=[[mathtext(cell) for cell in cells] for _, cells in rows],
        colLabels=list(STATS_COLUMNS),
        cellLoc="right",
        colLoc="right",
        bbox=Bbox.from_bounds(0.0, text_share, 1.0, 1.0 - text_share),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("0.8")
        if row == 0 or (row > 0 and rows[row - 1][0]):
            cell.set_text_props(fontweight="bold")
    ax.set_title("Statistics (from the stored histograms); width/height: of the originals", fontsize=10)
    ax.text(0, 0, "\n".join(notes), transform=ax.transAxes, fontsize=8, va="bottom", ha="left", wrap=True)


def report(cache: Cache, image_index: int = 0, seed: int = 0) -> Figure:
    """One tall figure with every view: the statistics table, counts, histograms per split and class, a grid
    and one image."""
    first = first_with_images(cache)
    stats = summarize(cache)
    table_height = 1.2 + 0.22 * (len(stats_rows(stats)) + 1)
    fig = _figure(12, 22 + table_height)
    table_fig, top, middle, grid_fig, bottom = _subfigures(fig, 5, 1, height_ratios=[table_height, 4.2, 4.2, 8.5, 4.6])
    _draw_stats(table_fig, stats, cache.leakage())
    left, right = _subfigures(top, 1, 2)
    _draw_counts(left, cache)
    _draw_hist(right, cache, None, False, False)
    mid_left, mid_right = _subfigures(middle, 1, 2)
    _draw_hist(mid_left, cache, None, True, False)
    _draw_hist(mid_right, cache, None, True, True)
    if len(first):
        _draw_grid(grid_fig, first, 9, seed, None)
        _draw_image(bottom, first, image_index)
    shape = " x ".join(str(s) for s in first.shape[1:][::-1])
    fig.suptitle(f"xraycache report: {mathtext(cache.path.name)} ({shape} px images)", fontsize=14, fontweight="bold")
    return fig

"""The report as one self-contained HTML page (``show report``): build settings, statistics, leakage, skipped
files and every figure embedded as a PNG; or, by the suffix of the output, the one-figure report."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.atomic import write_output
from ..core.errors import InputError
from ..core.escape import terminal
from .cache import Cache
from .figures import (
    DEFAULT_DPI,
    FIGURE_FORMATS,
    counts,
    first_with_images,
    grid,
    hist,
    image,
    output_format,
    report,
    save,
)
from .report_text import (
    MULTI_LABEL_NOTE,
    STATE_COLUMNS,
    STATS_COLUMNS,
    leakage_summary,
    plain,
    shares_over_100,
    state_rows,
    stats_rows,
    words,
)
from .stats import CacheStats, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..analysis.leakage import LeakageReport
    from ..core.errors import Skipped

REPORT_FORMATS = (".html", *FIGURE_FORMATS)  # the report also as a self-contained HTML page


def _text(value: object) -> str:
    """Text for the page: HTML-escaped, its control characters shown as ``\\x1b`` (a browser would drop them)."""
    return html.escape(terminal(str(value), reversible=False))


def _png(fig: Figure, dpi: int) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _records_html(name: str, rows: list[Any], limit: int) -> str:
    """One list of the leakage report as a table (a list of records) or a list."""
    title = f"<h3>{_text(words(name))}: {len(rows):,}</h3>"
    if not rows:
        return title + "<p>none</p>"
    more = (
        f"<p>... and {len(rows) - limit:,} more (all in <code>show stats --json</code>)</p>"
        if len(rows) > limit
        else ""
    )
    if all(isinstance(r, dict) for r in rows):
        columns = list(dict.fromkeys(k for r in rows[:limit] for k in r))
        head = "".join(f"<th>{_text(words(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_text(plain(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows[:limit]
        )
        return f'{title}<table class="records"><tr>{head}</tr>{body}</table>{more}'
    items = "".join(f"<li>{_text(plain(r))}</li>" for r in rows[:limit])
    return f"{title}<ul>{items}</ul>{more}"


def _leakage_html(leaks: LeakageReport, limit: int = 50) -> str:
    """The leakage section: the summary, then each list the report holds (patients, duplicate groups, ...)."""
    data = leaks.to_dict()
    data.pop("near_duplicate_groups", None)  # the same pairs, grouped
    for group in data["duplicates"]:  # a group may hold any number of files: the first ``limit`` are listed
        images = group["images"]
        if len(images) > limit:
            group["images"] = [*images[:limit], f"... and {len(images) - limit:,} more"]
    data["near_duplicates"] = [
        {
            "image": f"{pair.a[1]} ({pair.a[0]})",
            "looks like": f"{pair.b[1]} ({pair.b[0]})",
            "score": f"{pair.score:.3f}",
        }
        for pair in leaks.near_duplicates
    ]
    lists = "".join(_records_html(k, v, limit) for k, v in data.items() if isinstance(v, list))
    if leaks.near_duplicates_unavailable:
        lists += f"<p>near-duplicates not searched: {_text(leaks.near_duplicates_unavailable)}</p>"
    style = "warn" if leaks.leaks else "clean"
    return f'<p class="{style}">{_text(leakage_summary(leaks))}</p>{lists}'


def _stats_html(stats: CacheStats) -> str:
    head = "".join(f"<th>{_text(c)}</th>" for c in STATS_COLUMNS)
    total_row = ' class="total"'
    rows = "".join(
        f"<tr{total_row if total else ''}>" + "".join(f"<td>{_text(c)}</td>" for c in cells) + "</tr>"
        for total, cells in stats_rows(stats)
    )
    imbalance = "; ".join(f"{s.split}: {s.imbalance:.2f}" for s in stats.splits)
    note = f"<p>{_text(MULTI_LABEL_NOTE)}.</p>" if shares_over_100(stats) else ""
    coded = state_rows(stats)
    if coded:  # the labels as the tables give them: the class counts above are the positives
        state_head = "".join(f"<th>{_text(c)}</th>" for c in STATE_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{_text(c)}</td>" for c in cells) + "</tr>" for cells in coded)
        note += (
            "<p>Coded labels: the class counts above are the positives; per label and split, as the tables "
            f"give them:</p><table><tr>{state_head}</tr>{body}</table>"
        )
    return (
        f"<table><tr>{head}</tr>{rows}</table>{note}"
        f"<p>Imbalance ratio (largest class / smallest class): {_text(imbalance)}. "
        "Width and height: of the original files.</p>"
    )


def _skipped_html(skipped: list[Skipped], limit: int = 200) -> str:
    if not skipped:
        return "<p>none: every image file under the source folder is in the cache</p>"
    rows = "".join(
        f"<tr><td>{_text(s.path)}</td><td>{_text(s.split or '-')}</td><td>{_text(s.reason)}</td></tr>"
        for s in skipped[:limit]
    )
    more = (
        f"<p>... and {len(skipped) - limit:,} more (all in <code>xraycache info</code>)</p>"
        if len(skipped) > limit
        else ""
    )
    return f'<table class="records"><tr><th>file</th><th>split</th><th>reason</th></tr>{rows}</table>{more}'


REPORT_STYLE = (
    "body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin-bottom:.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}table.records td,table.records th{text-align:left}tr.total{font-weight:bold;background:#f3f3f3}"
    "img{max-width:100%;display:block;margin-bottom:1em}.warn{color:#9a5b00}.clean{color:#1a7f37}"
)


def report_html(cache: Cache, image_index: int = 0, seed: int = 0, dpi: int = DEFAULT_DPI) -> str:
    """A self-contained HTML page: build settings, statistics, leakage, skipped files, every figure as a PNG."""
    stats = summarize(cache)
    leaks = cache.leakage()
    first = first_with_images(cache)
    figures = [
        ("counts", "Images per class and split", counts(cache)),
        ("hist-split", "Pixel distribution per split", hist(cache)),
        ("hist-class", "Pixel distribution per class", hist(cache, by_class=True)),
    ]
    if len(first):
        figures += [
            ("grid", f"Random images ({first.name})", grid(first, n=9, seed=seed)),
            ("image", f"One image ({first.name}[{image_index}])", image(first, image_index)),
        ]
    sections = [
        ("statistics", "Statistics (from the stored histograms)", _stats_html(stats)),
        ("leakage", "Leakage between splits", _leakage_html(leaks)),
        ("skipped", f"Skipped files: {len(stats.skipped):,}", _skipped_html(stats.skipped)),
    ] + [
        (key, title, f'<img alt="{_text(title)}" src="data:image/png;base64,{_png(fig, dpi)}">')
        for key, title, fig in figures
    ]
    body = "".join(
        f'<section id="{key}"><h2>{_text(title)}</h2>{content}</section>' for key, title, content in sections
    )
    settings = ", ".join(f"{k}={v}" for k, v in stats.settings.items())
    shape = " x ".join(str(s) for s in stats.image_shape[::-1])
    dtype = str(cache.attrs.get("dtype", "uint8"))
    name = _text(cache.path.name)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>xraycache report: {name}</title>"
        f"<style>{REPORT_STYLE}</style></head><body><h1>xraycache report: {name}</h1>"
        f"<p>{_text(str(cache.path))}: images {_text(shape)} px {_text(dtype)}; "
        f"{_text(settings)}; built {_text(str(cache.attrs.get('created', '?')))} with xraycache "
        f"{_text(str(cache.attrs.get('tool_version', '?')))}</p>{body}</body></html>"
    )


def write_report(
    cache: Cache, out: str | os.PathLike[str], image_index: int = 0, seed: int = 0, dpi: int = DEFAULT_DPI
) -> Path:
    """Write the report by the suffix of ``out``: a self-contained HTML page (.html), or one PNG, PDF or SVG figure."""
    path = Path(out)
    if output_format(path, REPORT_FORMATS) != ".html":
        return save(report(cache, image_index, seed), path, dpi=dpi)
    page = report_html(cache, image_index, seed, dpi).encode("utf-8")
    try:  # a link planted at OUT is replaced, never followed
        write_output(path, lambda tmp: tmp.write_bytes(page))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}; give --out a writable path") from None
    return path

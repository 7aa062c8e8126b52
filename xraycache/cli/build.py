"""``xraycache build``: parse options, call the build, print the summary.

The options are not declared here: every field of ``core.options.BuildOptions`` becomes one ``--flag``
with the type, default, choices, range, help and panel its definition gives (``option_parameters``).
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..core.errors import XrayCacheError
from ..core.options import BuildOptions, flag_of, hints_of, info_of
from ._common import cli_errors, console, err_console, progress_bar, said, shown

if typing.TYPE_CHECKING:
    from ..builder.report import BuildReport


def option_parameters() -> list[inspect.Parameter]:
    """One keyword-only typer parameter per build option, from its definition in ``BuildOptions``."""
    parameters = []
    for part, f in BuildOptions.fields():
        info = info_of(f)
        hint = hints_of(BuildOptions.PARTS[part])[f.name]
        default = f.default
        if typing.get_origin(hint) is tuple:  # a repeatable option: typer collects a list
            hint, default = typing.Optional[list[str]], None  # noqa: UP045 - typer reads the typing form
        declared = typer.Option(
            *((flag_of(f), *info.flags[1:]) if info.flags else (flag_of(f),)),
            help=info.help,
            rich_help_panel=info.panel,
            min=info.min,
            max=info.max,
            metavar=info.metavar,
            show_default=default is not None,
        )
        parameters.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[hint, declared]
            )
        )
    return parameters


def with_build_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(..., **options)`` one CLI option per build option (typer reads the signature)."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    hints = typing.get_type_hints(command, include_extras=True)
    parameters = [p.replace(annotation=hints[p.name]) for p in own] + option_parameters()
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


@with_build_options
def build_command(
    src: Annotated[
        Path, typer.Argument(help="Dataset folder, e.g. chest_xray/ holding train/NORMAL/*.jpeg.", show_default=False)
    ],
    out: Annotated[Path, typer.Argument(help="HDF5 file to write, e.g. train.h5.", show_default=False)],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", rich_help_panel="Running", help="Scan and show what would be built, without decoding."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", rich_help_panel="Running", help="Print nothing but errors.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", rich_help_panel="Running", help="Print the build report as JSON.")
    ] = False,
    **options: Any,
) -> None:
    """Decode, resize and cache every image under SRC into one HDF5 file OUT, on all cores.

    Labels come from the folders (Kaggle NORMAL/PNEUMONIA, 1_Normal/2_Bacteria/3_Virus, or any CLASS folders), splits from train/val/test folders; unreadable files are skipped and listed. Re-running on an existing OUT with the same settings only redoes what changed.

    Example: xraycache build chest_xray train.h5 --classes three
    """
    with cli_errors():
        _check_pil()
        from ..builder.pipeline import run_build  # the build stack, only when a build runs

        chosen = BuildOptions.from_flat(**options)
        command = shlex.join(["xraycache", *sys.argv[1:]])
        with progress_bar("building", None, enabled=not (dry_run or quiet or as_json)) as progress:
            report = run_build(
                src,
                out,
                chosen,
                progress=progress,
                on_scan=progress.set_total if progress is not None else None,
                dry_run=dry_run,
                command=command,
            )
    if not quiet:
        for warning in report.warnings:
            err_console.print(f"[yellow]warning:[/] {said(warning)}", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        print_summary(report)


def _check_pil() -> None:
    """Stop with one line on how to repair PIL when it cannot decode (before the build stack imports it)."""
    from ..imaging.pil_install import pil_problem

    problem = pil_problem()
    if problem is not None and problem[1]:
        raise XrayCacheError(problem[0])


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:,.0f} {unit}" if unit == "B" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1000  # type: ignore[assignment]
    return str(nbytes)


WIDE_LABELS = 6  # more labels than this: one row per label (CheXpert's 14 would not fit as columns)


def _counts_table(report: BuildReport, title: str) -> Table:
    """Images per split and label: splits as rows, or, past ``WIDE_LABELS`` labels, labels as rows."""
    totals = {split: report.split_images.get(split, sum(n.values())) for split, n in report.counts.items()}
    table = Table(title=title, title_justify="left")
    if len(report.label_names) > WIDE_LABELS:
        table.add_column("label")
        for split in report.counts:
            table.add_column(shown(split), justify="right")
        for name in report.label_names:
            table.add_row(shown(name), *(f"{report.counts[split][name]:,}" for split in report.counts))
        table.add_row("images", *(f"{totals[split]:,}" for split in report.counts), style="bold")
        return table
    table.add_column("split")
    for name in report.label_names:
        table.add_column(shown(name), justify="right")
    table.add_column("total", justify="right", style="bold")
    for split, by_label in report.counts.items():  # a multi-label image counts once in its total
        table.add_row(shown(split), *(f"{by_label[n]:,}" for n in report.label_names), f"{totals[split]:,}")
    return table


def print_summary(report: BuildReport) -> None:
    """Images per split and class, then skipped/ignored files and speed; one line when OUT is up to date."""
    if report.mode == "unchanged" or report.would == "unchanged":
        print_up_to_date(report)
        return
    title = "would build (dry run)" if report.dry_run else f"built {shown(report.out)}"
    console.print(_counts_table(report, f"{title}: {report.layout} layout"))
    if report.skipped:
        skipped = Table(title=f"skipped {len(report.skipped)} file(s)", title_justify="left", title_style="yellow")
        skipped.add_column("file")
        skipped.add_column("reason")
        for row in report.skipped[:20]:
            skipped.add_row(shown(row.path), said(row.reason))  # e.g. "pip install 'xraycache[dicom]'"
        if len(report.skipped) > 20:
            skipped.add_row(f"... and {len(report.skipped) - 20} more", "(all listed in the file's /skipped)")
        console.print(skipped)
    print_tables(report)
    if report.csv_rows_without_file:
        rows = report.csv_rows_without_file
        listed = ", ".join(map(shown, rows[:5])) + (
            f" (and {len(rows) - 5} more; all in --json)" if len(rows) > 5 else ""
        )
        console.print(f"[yellow]{len(rows):,} table row(s) name no image under SRC[/]: {listed}", highlight=False)
    line = f"{report.images:,} images, {len(report.skipped)} skipped, {len(report.ignored)} non-image files ignored"
    if report.dry_run:
        console.print(line + " (nothing decoded or written)")
        if report.would == "incremental":
            retried = f", retry {report.retried:,} skipped last time" if report.retried else ""
            touched = f" ({report.touched:,} touched: same content, new mtime)" if report.touched else ""
            console.print(
                f"would update {shown(report.out)}: reuse {report.reused:,}{touched}, add {report.added:,}, "
                f"decode {report.changed:,} changed, remove {report.removed:,}{retried}",
                highlight=False,
            )
        return
    console.print(
        f"{line}; {report.seconds:.1f} s, {report.images_per_second:,.0f} images/s on {report.jobs} worker(s) "
        f"({report.backend}); {shown(report.out)}: {_size(report.output_bytes)}",
        highlight=False,
    )
    if report.dropped_duplicates:
        console.print(
            f"--drop-duplicates: left out {report.dropped_duplicates:,} near-duplicate image(s) "
            "(listed as skipped, with the image each one copies)",
            highlight=False,
        )
    if report.moved_duplicates:
        console.print(
            f"--resplit: moved {report.moved_duplicates:,} image(s) to the split of the near-duplicates "
            "they join, so no radiograph is in two splits",
            highlight=False,
        )
    print_incremental(report)


def print_tables(report: BuildReport) -> None:
    """What the --labels tables gave: rows, filters, joins, and each split's patients, studies and views."""
    tables = report.tables
    if not tables:
        return
    how = "SRC not walked" if tables["found_by"] == "path" else "SRC walked, matched by file name"
    if tables["dropped_folders"]:
        how += f"; the tables' paths matched without their first {tables['dropped_folders']} folder(s)"
    parts = [f"{shown(', '.join(tables['tables']))}: {tables['rows']:,} image row(s) ({how})"]
    parts += [f"--where {shown(w)} removed {n:,}" for w, n in tables["removed_by_where"].items()]
    parts += [f"{n:,} without a row in {shown(t)}" for t, n in tables["rows_without_join"].items() if n]
    parts += [
        f"{n:,} key(s) of {shown(t)} with rows that disagree" for t, n in tables["ambiguous_join_keys"].items() if n
    ]
    if tables["rows_without_path"]:
        parts.append(f"{tables['rows_without_path']:,} row(s) with no path")
    console.print("tables " + "; ".join(parts), highlight=False)
    for split, seen in tables["splits"].items():
        views = ", ".join(f"{shown(v)} {n:,}" for v, n in seen["views"].items())
        counts = ", ".join(f"{seen[k]:,} {k}" for k in ("images", "patients", "studies") if seen[k] or k == "images")
        console.print(f"  {shown(split)}: {counts}" + (f"; views {views}" if views else ""), highlight=False)


def print_incremental(report: BuildReport) -> None:
    """For a rebuild of an existing cache: what was reused, added, changed and removed."""
    if report.mode != "incremental":
        return
    touched = f" ({report.touched:,} touched: same content, new mtime)" if report.touched else ""
    counts = f"reused {report.reused:,}{touched}, added {report.added:,}, changed {report.changed:,}, removed {report.removed:,}"
    console.print(f"incremental: {counts}", highlight=False)


def print_up_to_date(report: BuildReport) -> None:
    """The one line of a rebuild (or dry run) that finds OUT already holding this build."""
    skipped = f", {len(report.skipped):,} skipped as before" if report.skipped else ""
    what = " (dry run)" if report.dry_run else ""
    console.print(
        f"up to date, nothing to do{what}: {shown(report.out)} already holds these {report.reused:,} images{skipped}; "
        "not rewritten",
        highlight=False,
        soft_wrap=True,
    )

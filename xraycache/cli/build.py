"""``xraycache build``: parse options, call :func:`xraycache.build`, print the summary."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from ..dask_backend import DEFAULT_CONNECT_TIMEOUT
from ..decode import DEFAULT_MAX_PIXELS
from ..pipeline import BuildReport, build
from ._common import cli_errors, console, progress_bar

Fit = Literal["stretch", "pad", "crop"]
Filter = Literal["area", "box", "bilinear", "hamming", "lanczos"]
Classes = Literal["auto", "binary", "three"]
Compression = Literal["none", "gzip", "lzf"]
WindowChoice = Literal["auto", "dicom", "minmax", "percentile"]
DtypeChoice = Literal["uint8", "uint16"]
BackendChoice = Literal["loky", "dask"]


def build_command(
    src: Annotated[
        Path, typer.Argument(help="Dataset folder, e.g. chest_xray/ holding train/NORMAL/*.jpeg.", show_default=False)
    ],
    out: Annotated[Path, typer.Argument(help="HDF5 file to write, e.g. train.h5.", show_default=False)],
    size: Annotated[
        int,
        typer.Option(rich_help_panel="Output", min=8, max=4096, help="Output side in pixels (images are size x size)."),
    ] = 256,
    fit: Annotated[
        Fit,
        typer.Option(
            rich_help_panel="Output",
            help="stretch to the square (the notebook's way), pad to keep the aspect (fill 0), or centre-crop.",
        ),
    ] = "stretch",
    classes: Annotated[
        Classes,
        typer.Option(
            rich_help_panel="Labels and splits",
            help="Kaggle labels: binary (normal/pneumonia) or three (normal/bacterial/viral, from file names). auto: binary for Kaggle folders, the folder names otherwise.",
        ),
    ] = "auto",
    filter: Annotated[
        Filter,
        typer.Option(
            "--filter",
            rich_help_panel="Output",
            help="Resize filter after the DCT-scaled decode: area is an exact area average (most faithful); box/bilinear/hamming/lanczos are Pillow's (box is fastest).",
        ),
    ] = "area",
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", rich_help_panel="Running", help="Worker processes; -1 uses every core.")
    ] = -1,
    compression: Annotated[
        Compression,
        typer.Option(rich_help_panel="Output", help="HDF5 compression of the image arrays (none reads fastest)."),
    ] = "none",
    max_pixels: Annotated[
        int,
        typer.Option(
            rich_help_panel="Output", min=1, help="Refuse images with more pixels than this (decompression bombs)."
        ),
    ] = DEFAULT_MAX_PIXELS,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", rich_help_panel="Output", help="Replace OUT if it exists.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", rich_help_panel="Running", help="Fail (exit 1, nothing written) if any image cannot be decoded."
        ),
    ] = False,
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
    window: Annotated[
        WindowChoice,
        typer.Option(
            rich_help_panel="High bit depth and DICOM",
            help="Sources deeper than 8 bits (16-bit PNG, DICOM): auto = the DICOM's own VOI where it has one, else percentile; dicom = the file's VOI (DICOMs without one are skipped); minmax = full range; percentile = 0.5-99.5%. 8-bit JPEG/PNG are never re-windowed.",
        ),
    ] = "auto",
    dtype: Annotated[
        DtypeChoice,
        typer.Option(
            rich_help_panel="High bit depth and DICOM",
            help="Stored pixel type: uint8, or uint16 to keep the depth of 16-bit sources.",
        ),
    ] = "uint8",
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            rich_help_panel="Labels and splits",
            help="CSV of labels (replaces the folder labels); delimiter sniffed.",
            show_default=False,
        ),
    ] = None,
    path_col: Annotated[
        str,
        typer.Option(
            rich_help_panel="Labels and splits",
            help="--labels column with the image path (relative to SRC) or unique file name.",
        ),
    ] = "path",
    label_col: Annotated[
        str, typer.Option(rich_help_panel="Labels and splits", help="--labels column with the label(s).")
    ] = "label",
    label_sep: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Labels and splits",
            help="Separator of several labels in one cell, e.g. '|' (NIH): multi-label.",
            show_default=False,
        ),
    ] = None,
    patient_col: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Labels and splits", help="--labels column with the patient id.", show_default=False
        ),
    ] = None,
    resplit: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Labels and splits",
            help="Pool all splits and re-split by patient: train,val,test fractions, e.g. 0.8,0.1,0.1 (stable, stratified in expectation).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(rich_help_panel="Labels and splits", help="Seed of --resplit and --folds.")] = 0,
    folds: Annotated[
        int,
        typer.Option(
            rich_help_panel="Labels and splits",
            min=0,
            help="Also record a patient-grouped cross-validation fold (0..K-1) per image.",
        ),
    ] = 0,
    keep_identifiers: Annotated[
        bool,
        typer.Option(
            "--keep-identifiers",
            rich_help_panel="High bit depth and DICOM",
            help="Store DICOM PatientID/StudyInstanceUID as they are instead of keyed pseudonyms.",
        ),
    ] = False,
    backend: Annotated[
        BackendChoice,
        typer.Option(
            rich_help_panel="Scaling out",
            help="Where images are decoded: loky (local processes, --jobs) or dask (a dask.distributed cluster: needs --scheduler; workers must see SRC and OUT at the same paths).",
        ),
    ] = "loky",
    scheduler: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Scaling out",
            help="dask scheduler address, e.g. tcp://HOST:8786 (default: $DASK_SCHEDULER_ADDRESS).",
            show_default=False,
        ),
    ] = None,
    scheduler_timeout: Annotated[
        float,
        typer.Option(
            rich_help_panel="Scaling out",
            min=0.1,
            help="Seconds to reach the dask scheduler and its first worker before giving up.",
        ),
    ] = DEFAULT_CONNECT_TIMEOUT,
    shards: Annotated[
        int,
        typer.Option(
            rich_help_panel="Scaling out",
            min=1,
            help="Write K shard files in parallel (each by its own worker) into a folder beside OUT, joined by OUT with HDF5 virtual datasets: for when the single writer is the limit. Move OUT together with its folder.",
        ),
    ] = 1,
) -> None:
    """Decode, resize and cache every image under SRC into one HDF5 file OUT, on all cores.

    Labels come from the folders (Kaggle NORMAL/PNEUMONIA, 1_Normal/2_Bacteria/3_Virus, or any CLASS folders), splits from train/val/test folders; unreadable files are skipped and listed. Re-running on an existing OUT with the same settings only redoes what changed.

    Example: xraycache build chest_xray train.h5 --classes three
    """
    with cli_errors():
        command = shlex.join(["xraycache", *sys.argv[1:]])
        with progress_bar("building", None, enabled=not (dry_run or quiet or as_json)) as progress:
            report = build(
                src,
                out,
                size=size,
                fit=fit,
                classes=classes,
                filter=filter,
                jobs=jobs,
                compression=compression,
                max_pixels=max_pixels,
                overwrite=overwrite,
                strict=strict,
                dry_run=dry_run,
                progress=progress,
                on_scan=progress.set_total if progress is not None else None,
                command=command,
                window=window,
                dtype=dtype,
                labels=labels,
                path_col=path_col,
                label_col=label_col,
                label_sep=label_sep,
                patient_col=patient_col,
                resplit=resplit,
                seed=seed,
                folds=folds,
                keep_identifiers=keep_identifiers,
                backend=backend,
                scheduler=scheduler,
                scheduler_timeout=scheduler_timeout,
                shards=shards,
            )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        print_summary(report)


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:,.0f} {unit}" if unit == "B" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1000  # type: ignore[assignment]
    return str(nbytes)


def print_summary(report: BuildReport) -> None:
    """Images per split and class, then skipped/ignored files and speed."""
    title = "would build (dry run)" if report.dry_run else f"built {report.out}"
    table = Table(title=f"{title}: {report.layout} layout", title_justify="left")
    table.add_column("split")
    for name in report.label_names:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right", style="bold")
    for split, by_label in report.counts.items():
        table.add_row(split, *(f"{by_label[n]:,}" for n in report.label_names), f"{sum(by_label.values()):,}")
    console.print(table)
    if report.skipped:
        skipped = Table(title=f"skipped {len(report.skipped)} file(s)", title_justify="left", title_style="yellow")
        skipped.add_column("file")
        skipped.add_column("reason")
        for row in report.skipped[:20]:
            skipped.add_row(row["path"], row["reason"])
        if len(report.skipped) > 20:
            skipped.add_row(f"... and {len(report.skipped) - 20} more", "(all listed in the file's /skipped)")
        console.print(skipped)
    if report.csv_rows_without_file:
        rows = report.csv_rows_without_file
        listed = ", ".join(rows[:5]) + (f" (and {len(rows) - 5} more; all in --json)" if len(rows) > 5 else "")
        console.print(f"[yellow]{len(rows)} labels CSV row(s) name no image under SRC[/]: {listed}", highlight=False)
    line = f"{report.images:,} images, {len(report.skipped)} skipped, {len(report.ignored)} non-image files ignored"
    if report.dry_run:
        console.print(line + " (nothing decoded or written)")
        return
    console.print(
        f"{line}; {report.seconds:.1f} s, {report.images_per_second:,.0f} images/s on {report.jobs} worker(s) "
        f"({report.backend}); {report.out}: {_size(report.output_bytes)}",
        highlight=False,
    )
    print_incremental(report)


def print_incremental(report: BuildReport) -> None:
    """For a rebuild of an existing cache (issue 6): what was reused, added, changed and removed."""
    if report.mode not in ("incremental", "unchanged"):
        return
    touched = f" ({report.touched:,} touched: same content, new mtime)" if report.touched else ""
    counts = f"reused {report.reused:,}{touched}, added {report.added:,}, changed {report.changed:,}, removed {report.removed:,}"
    if report.mode == "unchanged":
        console.print(f"up to date: {counts}; {report.out} not rewritten", highlight=False)
    else:
        console.print(f"incremental: {counts}", highlight=False)

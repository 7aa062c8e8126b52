"""``xraycache export FILE OUT``: the cache as a MedMNIST-style ``.npz`` or as a CSV of paths and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ._common import cli_errors, console, open_for_reading, shown

ExportFormat = Literal["medmnist", "csv"]


def export_command(
    file: Annotated[Path, typer.Argument(help="Cache file written by `xraycache build`.", show_default=False)],
    out: Annotated[Path, typer.Argument(help="File to write, e.g. chest.npz or images.csv.", show_default=False)],
    format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="medmnist: {split}_images (N, H, W) uint8 and {split}_labels (N, 1) or (N, C) multi-hot, in one "
            ".npz; csv: one row per image (split, index, path, label, patient, width, height, mode, file_hash). "
            "Default: from OUT's suffix (.npz, .csv).",
            show_default=False,
        ),
    ] = None,
    to_uint8: Annotated[
        bool, typer.Option("--to-uint8", help="medmnist from a uint16 cache: keep the high byte of each pixel.")
    ] = False,
) -> None:
    """Export FILE for other tools: a MedMNIST-style .npz of images and labels, or a CSV of paths and labels.

    The .npz has every split present and reloads with numpy.load; a uint16 cache needs --to-uint8. OUT is
    replaced only once it is complete."""
    from ..read.export import export_csv, export_format, export_medmnist

    with cli_errors(), open_for_reading(file) as cache:
        kind = export_format(out, format)
        report = export_medmnist(cache, out, to_uint8=to_uint8) if kind == "medmnist" else export_csv(cache, out)
    splits = ", ".join(f"{shown(name)} {n:,}" for name, n in report.images.items()) or "no split"
    console.print(
        f"wrote {shown(report.path)} ({kind}, {report.bytes / 1e6:,.1f} MB): {report.total:,} images ({splits})",
        highlight=False,
        soft_wrap=True,
    )

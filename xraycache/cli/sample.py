"""``xraycache sample``: write the built-in synthetic dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import InputError
from ._common import cli_errors, console, progress_bar, shown


def sample_command(
    directory: Annotated[
        Path, typer.Argument(help="Folder to create; the images go to DIR/chest_xray/.", show_default=False)
    ],
    n: Annotated[int, typer.Option("--n", min=3, help="Number of images.")] = 600,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: the same seed writes the same bytes.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes; -1 uses every core.")] = -1,
) -> None:
    """Write a synthetic chest-X-ray-like dataset in the Kaggle layout (train/val/test, NORMAL/PNEUMONIA).

    For trying the tool without downloading anything: ~27% normal, 47% bacterial, 26% viral,
    400-2,800 px JPEGs, ~10% stored as RGB, Kaggle file names with several images per patient.
    """
    from ..sample import write_sample

    with cli_errors():
        if directory.exists() and not directory.is_dir():
            raise InputError(f"{directory} is a file, not a folder; give a folder to create, e.g. sample/")
        with progress_bar("drawing", n, enabled=True) as progress:
            try:
                root = write_sample(directory, n=n, seed=seed, jobs=jobs, progress=progress)
            except OSError as exc:  # e.g. a file where a folder of the sample goes, a full or read-only disk
                reason = exc.strerror or str(exc)
                raise InputError(f"cannot write the sample under {directory}: {reason}") from None
    console.print(f"wrote {n} images to {shown(root)}", highlight=False)

"""Hand a cache to other tools: list its images, or export them as a MedMNIST-style ``.npz`` or a CSV.

- :func:`image_rows` lists ``(split, index, label, path, ...)`` per image, optionally of one split or label:
  what ``xraycache ls`` prints and ``show image --path`` takes.
- :func:`export_medmnist` writes ``{split}_images`` (N, H, W) uint8 and ``{split}_labels`` (N, 1), or
  (N, C) multi-hot as MedMNIST's ChestMNIST has, for the splits present; a uint16 cache is refused
  unless ``to_uint8`` (its high byte, the scale ``show`` uses). One split is in memory at a time.
- :func:`export_csv` writes one row per image: split, index, path, label, patient, width, height, mode,
  file_hash (multi-label names joined by ``|``). A text cell a spreadsheet would run as a formula (one
  beginning with ``=``, ``+``, ``-``, ``@``, a tab or CR) is written with a leading ``'``
  (``core.escape.csv_cell``); index, width and height, and text that is a number, stay numbers.

Both write a temporary file beside OUT and rename it over OUT when complete, like the build.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.atomic import AtomicFile
from ..core.errors import InputError
from ..core.escape import csv_cell
from .cache import Cache, Split

CSV_COLUMNS = ("split", "index", "path", "label", "patient", "width", "height", "mode", "file_hash")
LABEL_SEP = "|"
FORMATS = ("medmnist", "csv")
SUFFIX_FORMATS = {".npz": "medmnist", ".csv": "csv"}


@dataclass(frozen=True)
class ImageRow:
    """One image of a cache: where it is (split, index), its label name(s) and source path."""

    split: str
    index: int
    label: str
    path: str


def label_texts(split: Split) -> list[str]:
    """Each image's label as text: its class name, or its names joined by ``|`` (multi-label; the positive
    ones of a coded cache)."""
    names = np.asarray(split.label_names, dtype=object)
    labels = split.labels
    if labels.ndim == 2:
        return [LABEL_SEP.join(names[row == 1]) for row in labels]  # multi-hot, or coded: the positives
    return [str(names[value]) for value in labels.tolist()]


def _selected(cache: Cache, split: str | None) -> list[str]:
    if split is None:
        return list(cache.splits)
    cache[split]  # InputError naming the splits when it is not one
    return [split]


def image_rows(cache: Cache, split: str | None = None, label: str | None = None) -> Iterator[ImageRow]:
    """Every image of ``cache`` (or of one split), in stored order; with ``label``, only images that have it.

    ``label`` is a class name (or number); InputError listing the names when it is not one.
    """
    names = _selected(cache, split)
    wanted = cache[names[0]].label_index(label) if label is not None and names else None
    for name in names:
        part = cache[name]
        labels = part.labels
        if wanted is None:
            keep = np.arange(len(part))
        else:
            keep = np.flatnonzero(labels[:, wanted] == 1 if labels.ndim == 2 else labels == wanted)
        texts = label_texts(part)
        paths = part.meta["path"]
        for i in keep.tolist():
            yield ImageRow(name, i, texts[i], str(paths[i]))


@dataclass
class ExportReport:
    """What an export wrote: the file, its format, and the images per split."""

    path: Path
    format: str
    images: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    @property
    def total(self) -> int:
        """Images written, all splits."""
        return sum(self.images.values())


def export_format(out: str | os.PathLike[str], format: str | None) -> str:
    """The export format: as given, else from OUT's suffix (.npz -> medmnist, .csv -> csv)."""
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"format {format!r}; use one of: {', '.join(FORMATS)}")
        return format
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise InputError(f"cannot tell the format from {Path(out).name!r}; give --format medmnist or --format csv")
    return SUFFIX_FORMATS[suffix]


def _check_out(cache: Cache, out: Path) -> None:
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name, e.g. {out / 'export.npz'}")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder for OUT")
    if out.exists() and out.resolve() == cache.path.resolve():
        raise InputError(f"{out} is the cache itself; give another OUT")


def export_medmnist(cache: Cache, out: str | os.PathLike[str], to_uint8: bool = False) -> ExportReport:
    """Write the cache as a MedMNIST-style ``.npz`` (see the module docstring); reload with ``np.load``.

    Labels are uint8, as MedMNIST stores them (int16 when there are more than 256 classes).
    """
    out = Path(out)
    _check_out(cache, out)
    dtypes = {str(cache[name].images.dtype) for name in cache.splits}
    if "uint16" in dtypes and not to_uint8:
        raise InputError(
            f"{cache.path} stores uint16 images and MedMNIST's are uint8; add --to-uint8 to keep the high byte"
        )
    if any(cache[name].coded for name in cache.splits):  # -1 and -2 have no place in MedMNIST's 0/1 labels
        raise InputError(
            f"{cache.path} stores coded labels (1, 0, -1 uncertain, -2 missing) and MedMNIST's are 0/1: read them "
            "with a label_policy (docs/reading.md) and save the arrays you choose"
        )
    label_type = np.uint8 if len(cache.label_names) <= 256 else np.int16
    report = ExportReport(out, "medmnist")
    # the file is renamed over OUT when complete, and removed if anything fails
    with (
        AtomicFile(out) as target,
        zipfile.ZipFile(target.tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        for name in cache.splits:
            images, labels = cache[name].load(channels=None, label_dtype="int16")
            if images.dtype == np.uint16:
                images = (images >> 8).astype(np.uint8)
            labels = labels.astype(label_type)
            labels = labels[:, None] if labels.ndim == 1 else labels  # (N, 1), or (N, C) multi-hot
            for key, array in ((f"{name}_images", images), (f"{name}_labels", labels)):
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            report.images[name] = len(images)
            del images
    report.bytes = out.stat().st_size
    return report


def export_csv(cache: Cache, out: str | os.PathLike[str]) -> ExportReport:
    """Write one CSV row per image with the columns of ``CSV_COLUMNS`` (see the module docstring)."""
    out = Path(out)
    _check_out(cache, out)
    report = ExportReport(out, "csv")
    with AtomicFile(out) as target, open(target.tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for name in cache.splits:
            split = cache[name]
            meta = split.meta
            texts = label_texts(split)
            columns = [meta[c] if c in meta else np.full(len(split), "") for c in CSV_COLUMNS[4:]]
            for i in range(len(split)):
                cells = [str(meta["path"][i]), texts[i], *(str(column[i]) for column in columns)]
                writer.writerow([csv_cell(name), i, *map(csv_cell, cells)])
            report.images[name] = len(split)
    report.bytes = out.stat().st_size
    return report

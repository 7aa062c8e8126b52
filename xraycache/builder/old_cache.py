"""The cache an incremental build updates: its index, its recorded settings, and its rows read back in runs.

A rebuild into an existing OUT reuses its images only when it was built the same way: the recorded
settings (every option that shapes the output, and the build context: source folder, versions) must
match, or the build stops and names them, since reusing pixels made another way would silently mix two
caches in one file. The imaging backend is not such a setting (see ``plan.py``). The old file is untrusted like any cache: it is opened through the
validating open, and its text is read within what the whole cache stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..core.errors import NotACacheError, OptionError, Skipped, literal
from ..core.options import setting_names
from ..core.reads import read_attrs, read_text
from ..core.schema import CONTEXT_SETTINGS, FORMAT_VERSION, SKIPPED_COLUMNS
from ..core.shard_files import cache_bytes
from ..core.validate import open_cache


@dataclass(frozen=True)
class OldImage:
    """Where one image sits in the old cache, and the source file facts it was built from."""

    split: str
    index: int
    label_name: str
    file_size: int
    mtime_ns: int
    file_hash: bytes
    width: int = 0  # the source's size, which says whether Pillow's resampling made the pixels
    height: int = 0


@dataclass
class OldCache:
    """The index of an existing cache file: enough to plan a rebuild without reading any pixel."""

    path: Path
    attrs: dict[str, Any]
    label_names: tuple[str, ...]
    images: dict[str, OldImage]  # storable path -> where it is
    skipped: list[Skipped]  # in file order


def open_old(out: Path, attrs: Mapping[str, Any]) -> OldCache:
    """The existing OUT as a cache a build with root attributes ``attrs`` may update; InputError when it is
    not a cache, is of an older format, or was built with other settings (each named)."""
    try:
        old = read_old_cache(out)
    except NotACacheError as exc:
        raise OptionError(
            literal(f"{out} exists and is not a cache this build can update ({exc}); pass ") + "{overwrite}",
            overwrite=True,
        ) from None
    version = old.attrs.get("format_version", 0)  # a whole number (open_cache refuses others); none: the oldest
    if version < FORMAT_VERSION:
        raise OptionError(
            literal(f"{out} was written in cache format {version}, older than this xraycache's {FORMAT_VERSION} ")
            + "(which stores near-duplicate descriptors, reads patient ids from NIH file names and checksums "
            "images with CRC-32); pass {overwrite} to rebuild it from scratch",
            overwrite=True,
        )
    diffs = settings_diff(old.attrs, attrs)
    if diffs:
        raise OptionError(
            literal(f"{out} was built with other settings ({'; '.join(diffs)}); ")
            + "pass {overwrite} to rebuild it from scratch, or choose another output file",
            overwrite=True,
        )
    return old


def _label_key(label_names: tuple[str, ...], row: np.ndarray) -> str:
    """One image's stored label(s) as ``prepare.label_key`` gives a scanned file's: the name, names joined by
    ``|`` (multi-hot), or the codes joined by ``,`` (int8: coded)."""
    if row.ndim == 0:
        return label_names[int(row)]
    if row.dtype == np.int8:
        return ",".join(str(int(code)) for code in row)
    return "|".join(n for n, on in zip(label_names, row, strict=True) if on)


def read_old_cache(path: Path) -> OldCache:
    """Read the index of the cache at ``path``; NotACacheError if it is not a readable xraycache file."""
    try:
        with open_cache(path) as handle:
            budget = cache_bytes(path, handle.attrs)  # all the text a legitimate cache holds
            attrs = read_attrs(handle)
            label_names = tuple(str(name) for name in attrs.get("label_names", ()))
            images: dict[str, OldImage] = {}
            for split in attrs.get("splits", ()):
                group = handle[split]
                meta = group["meta"]
                paths = read_text(meta["path"], budget)
                budget -= sum(len(p) for p in paths)
                labels = group["labels"][:]
                sizes = meta["file_size"][:]
                mtimes = meta["mtime_ns"][:]
                hashes = meta["file_hash"][:]
                widths, heights = meta["width"][:], meta["height"][:]
                for index, rel in enumerate(paths):
                    images[str(rel)] = OldImage(
                        split=str(split),
                        index=index,
                        label_name=_label_key(label_names, labels[index]),
                        file_size=int(sizes[index]),
                        mtime_ns=int(mtimes[index]),
                        file_hash=bytes(hashes[index]),
                        width=int(widths[index]),
                        height=int(heights[index]),
                    )
            skipped: list[Skipped] = []
            if "skipped" in handle:
                columns = [read_text(handle["skipped"][name], budget) for name in SKIPPED_COLUMNS]
                skipped = [Skipped(str(p), str(s), str(r)) for p, s, r in zip(*columns, strict=True)]
    except NotACacheError:
        raise
    except (OSError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise NotACacheError(f"{path} cannot be read as an xraycache cache: {exc}") from None
    return OldCache(path, attrs, label_names, images, skipped)


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``name old -> new`` for each recorded setting that differs."""
    diffs = []
    context = (k for k in CONTEXT_SETTINGS if k not in ("source_root", "imaging_backend"))  # backend: see plan.py
    for key in ("source_root", *setting_names(), *context):
        before, after = old.get(key), new.get(key)
        if before != after:
            diffs.append(f"{key} {before!r} -> {after!r}")
    return diffs


@dataclass
class OldRows:
    """One contiguous run of rows of an old split, as the writer takes them: pixels, provenance columns,
    checksums and descriptors (None where the old file has none: computed again from the pixels)."""

    pixels: np.ndarray
    meta: dict[str, np.ndarray]
    checksums: np.ndarray | None
    descriptors: np.ndarray | None


class OldRowReader:
    """The old cache's file, read in runs of unchanged rows. Its text is read within what the whole cache
    stores (:func:`cache_bytes`), counted over every run: rows of a hostile file that all point at one
    large heap string are refused instead of copied again and again."""

    def __init__(self, path: Path) -> None:
        self.file = open_cache(path)  # checked again: the rows are read from the file (and shards) checked here
        self.budget = cache_bytes(path, self.file.attrs)

    def read(self, split: str, start: int, stop: int, columns: Mapping[str, Any]) -> OldRows:
        """Rows ``start:stop`` of ``split``: its pixels and the meta ``columns`` the new file stores."""
        group = self.file[split]
        meta: dict[str, np.ndarray] = {}
        for name in columns:
            column = group["meta"][name]
            if h5py.check_string_dtype(column.dtype) is not None:
                meta[name] = read_text(column, self.budget, start, stop)
                self.budget -= sum(len(text) for text in meta[name])
            else:
                meta[name] = column[start:stop]
        checksums = group["checksums"][start:stop] if "checksums" in group else None
        descriptors = group["descriptors"][start:stop] if "descriptors" in group else None
        return OldRows(group["images"][start:stop], meta, checksums, descriptors)

    def close(self) -> None:
        """Close the old file (it may be replaced next: the rename of the new OUT)."""
        self.file.close()

    @classmethod
    @contextmanager
    def open(cls, path: Path | None) -> Iterator[OldRowReader | None]:
        """The reader of the old cache at ``path`` (None for a cold build), closed when the block ends."""
        if path is None:
            yield None
            return
        reader = cls(path)
        try:
            yield reader
        finally:
            reader.close()

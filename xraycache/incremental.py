"""Incremental rebuilds: what an existing cache already holds, and what a new build may reuse from it.

A file is reused when its size and mtime match what the old cache recorded; when only the mtime
moved, its content hash decides between *touched* (reused, mtime updated) and *changed* (decoded
again). Settings that change pixels (size, fit, filter, ...) must match, or the build stops and
names them: reusing pixels made another way would silently mix two caches in one file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import NotACacheError
from .scan import ScanResult, SourceFile
from .sources import SETTING_KEYS as SOURCE_SETTING_KEYS
from .sources import label_key
from .writer import FORMAT_NAME, storable_path

# Attributes that decide what a build produces; all must match for a cache to be reused.
SETTING_KEYS = (
    "source_root",
    "size",
    "fit",
    "classes",
    "filter",
    "compression",
    "max_pixels",
    "imaging_backend",
    "format_version",
    "tool_version",
    *SOURCE_SETTING_KEYS,  # window, dtype, labels CSV digest, resplit, seed, folds, identifiers (issue 7)
)
HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class OldImage:
    """Where one image sits in the old cache, and the source file facts it was built from."""

    split: str
    index: int
    label_name: str
    file_size: int
    mtime_ns: int
    file_hash: bytes


@dataclass
class OldCache:
    """The index of an existing cache file: enough to plan a rebuild without reading any pixel."""

    path: Path
    attrs: dict[str, Any]
    label_names: tuple[str, ...]
    images: dict[str, OldImage]  # storable path -> where it is
    skipped: list[tuple[str, str, str]]  # (path, split, reason), in file order
    has_checksums: bool


def _plain(value: Any) -> Any:
    """HDF5 attribute values as plain Python (numpy scalars and byte strings unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    return value


def read_old_cache(path: Path) -> OldCache:
    """Read the index of the cache at ``path``; NotACacheError if it is not a readable xraycache file."""
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _plain(value) for key, value in handle.attrs.items()}
            if attrs.get("format") != FORMAT_NAME:
                raise NotACacheError(f"{path} is an HDF5 file but not an xraycache cache")
            label_names = tuple(str(name) for name in attrs.get("label_names", []))
            images: dict[str, OldImage] = {}
            has_checksums = True
            for split in attrs.get("splits", []):
                group = handle[split]
                meta = group["meta"]
                paths = meta["path"].asstr()[:]
                labels = group["labels"][:]
                sizes = meta["file_size"][:]
                mtimes = meta["mtime_ns"][:]
                hashes = meta["file_hash"][:]
                has_checksums = has_checksums and "checksums" in group
                for index, rel in enumerate(paths):
                    images[str(rel)] = OldImage(
                        split=str(split),
                        index=index,
                        label_name=(
                            "|".join(n for n, on in zip(label_names, labels[index], strict=True) if on)
                            if labels.ndim == 2
                            else label_names[int(labels[index])]
                        ),
                        file_size=int(sizes[index]),
                        mtime_ns=int(mtimes[index]),
                        file_hash=bytes(hashes[index]),
                    )
            skipped: list[tuple[str, str, str]] = []
            if "skipped" in handle:
                group = handle["skipped"]
                columns = [group[name].asstr()[:] for name in ("path", "split", "reason")]
                skipped = [(str(p), str(s), str(r)) for p, s, r in zip(*columns, strict=True)]
    except NotACacheError:
        raise
    except (OSError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise NotACacheError(f"{path} cannot be read as an xraycache cache: {exc}") from None
    return OldCache(path, attrs, label_names, images, skipped, has_checksums)


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``name old -> new`` for each build setting that differs."""
    diffs = []
    for key in SETTING_KEYS:
        before, after = old.get(key), new.get(key)
        if before != after:
            diffs.append(f"{key} {before!r} -> {after!r}")
    return diffs


def file_sha256(path: str | os.PathLike[str]) -> bytes:
    """Hex sha256 of a file's bytes (the ``file_hash`` column), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest().encode("ascii")


@dataclass
class Action:
    """What the rebuild does with one scanned file: copy it from the old cache or decode it."""

    source: SourceFile
    old: OldImage | None = None  # set when reused
    mtime_ns: int = 0  # the file's current mtime (differs from old.mtime_ns when touched)

    @property
    def reuse(self) -> bool:
        return self.old is not None


@dataclass
class Plan:
    """Every scanned file's action, in scan (= output) order, with the counts the summary shows."""

    actions: list[Action]
    reused: int = 0
    touched: int = 0  # reused, but the mtime moved (content hash unchanged)
    added: int = 0
    changed: int = 0
    removed: int = 0
    retried: list[SourceFile] = field(default_factory=list)  # skipped last time: decoded again

    @property
    def decode(self) -> list[SourceFile]:
        return [a.source for a in self.actions if not a.reuse]


def plan_rebuild(found: ScanResult, old: OldCache) -> Plan:
    """Compare the scan with the old cache's index (size + mtime; sha256 only where those moved)."""
    actions: list[Action] = []
    plan = Plan(actions)
    old_skipped = {path for path, _, _ in old.skipped}
    seen: set[str] = set()
    for source in found.files:
        key = storable_path(source.path)
        seen.add(key)
        entry = old.images.get(key)
        try:
            stat = os.stat(found.root / source.path)
        except OSError:
            stat = None
        if entry is None:
            actions.append(Action(source))
            if key in old_skipped:
                plan.retried.append(source)
            else:
                plan.added += 1
            continue
        same_place = entry.split == source.split and entry.label_name == label_key(
            found.label_names, source, found.multi_label
        )
        if stat is None or not same_place or stat.st_size != entry.file_size:
            actions.append(Action(source))
            plan.changed += 1
            continue
        if stat.st_mtime_ns == entry.mtime_ns:
            actions.append(Action(source, entry, stat.st_mtime_ns))
            plan.reused += 1
            continue
        try:
            same = file_sha256(found.root / source.path) == entry.file_hash
        except OSError:
            same = False
        if same:
            actions.append(Action(source, entry, stat.st_mtime_ns))
            plan.reused += 1
            plan.touched += 1
        else:
            actions.append(Action(source))
            plan.changed += 1
    plan.removed = sum(1 for key in old.images if key not in seen)
    return plan

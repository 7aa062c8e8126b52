"""``verify``: check a cache file on its own, and (given SRC) against the source files it was built from.

On its own: every split's images, labels, meta columns and checksums have the same length; images
have the recorded shape and dtype; each image's stored checksum matches its pixels, and its meta
min/max too, and its near-duplicate descriptor; ``stats/count`` and ``stats/hist`` match the labels and
pixels. The summary counts the near-duplicate pairs across splits (leakage, not damage). Against SRC: every
source file is re-hashed (sha256) and compared with the ``file_hash`` recorded for it, which lists
files missing from SRC, new in SRC, and changed since the build.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .analysis.leakage import leakage, search_refused
from .builder.scan import scan
from .core.files import file_sha256
from .core.limits import SEARCH_IMAGES, SEARCH_PAIRS
from .core.pinned import CacheFiles, RowsGroup
from .core.pixels import pixel_checksum, pixel_descriptor, pixel_descriptors
from .core.reads import read_attrs, read_text
from .core.schema import DESCRIPTOR_SIDE, storable_path
from .core.shard_files import cache_bytes
from .core.validate import open_cache

BLOCK_BYTES = 32 << 20  # pixels read per block while checking


@dataclass
class Finding:
    """One disagreement: where (split or file), what kind, and the details."""

    where: str
    kind: str
    detail: str


@dataclass
class VerifyReport:
    """What ``verify`` checked and everything it found wrong (empty lists: all agrees)."""

    out: str
    src: str | None = None
    images: int = 0
    splits: list[str] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)  # the file on its own
    missing: list[str] = field(default_factory=list)  # in the cache, gone from SRC
    new: list[str] = field(default_factory=list)  # in SRC, not in the cache (nor skipped)
    changed: list[str] = field(default_factory=list)  # content differs from the recorded hash
    unchecked: list[str] = field(default_factory=list)  # notes: what could not be checked, and why
    near_duplicates_across: int | None = None  # near-duplicate pairs across splits; None: not searched
    near_duplicates_within: int | None = None
    near_duplicates_unsearched: str = ""  # why they were not searched, where the count is the reason

    @property
    def ok(self) -> bool:
        return not (self.problems or self.missing or self.new or self.changed)

    def findings(self) -> list[Finding]:
        """All disagreements as one list (the CLI's table)."""
        return [
            *self.problems,
            *(Finding(p, "missing", "in the cache, no longer in SRC") for p in self.missing),
            *(Finding(p, "new", "in SRC, not in the cache") for p in self.new),
            *(Finding(p, "changed", "content differs from the hash recorded at build time") for p in self.changed),
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def verify(out: str | os.PathLike[str], src: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check the cache ``out`` on its own and, given ``src``, against its source files."""
    report = VerifyReport(out=str(out), src=None if src is None else str(src))
    with open_cache(out, consistent=False) as file:  # differences are reported here, not refused
        attrs = read_attrs(file)
        report.splits = [str(s) for s in attrs.get("splits", [])]
        try:
            cached, skipped = _check_file(file, attrs, report, sources=src is not None)
        except (KeyError, OSError, ValueError) as exc:
            report.problems.append(Finding(report.out, "unreadable", f"{type(exc).__name__}: {exc}"))
            return report
        if not report.problems:
            _count_near_duplicates(file, report)
    if src is not None:
        _check_sources(Path(src), attrs, cached, skipped, report)
    return report


def _check_file(
    file: CacheFiles, attrs: dict[str, Any], report: VerifyReport, *, sources: bool = True
) -> tuple[dict[str, bytes], set[str]]:
    """Structure and checksums of every split; returns path -> recorded file hash (empty unless
    ``sources``: what a check against SRC compares), and the skipped paths."""
    label_names = list(attrs.get("label_names", []))
    budget = cache_bytes(Path(file.filename), file.attrs)  # the most text the cache can hold
    size = attrs.get("size")
    version = attrs.get("format_version", 0)  # a whole number (open_cache refuses others); none: the oldest
    cached: dict[str, bytes] = {}
    for split in report.splits:
        if split not in file:
            report.problems.append(Finding(split, "structure", "split listed in the attributes but missing"))
            continue
        group = file[split]
        images = group["images"]
        n = images.shape[0]
        report.images += n
        if images.ndim != 3 or (size is not None and images.shape[1:] != (size, size)):
            report.problems.append(Finding(split, "shape", f"images are {images.shape}, expected (N, {size}, {size})"))
        if images.dtype not in (np.uint8, np.uint16):
            report.problems.append(Finding(split, "dtype", f"images are {images.dtype}, expected uint8 or uint16"))
        lengths = {"labels": group["labels"].shape[0]}
        lengths.update({f"meta/{name}": column.shape[0] for name, column in group["meta"].items()})
        for name in ("checksums", "descriptors"):
            if name in group:
                lengths[name] = group[name].shape[0]
        for name, length in lengths.items():
            if length != n:
                report.problems.append(Finding(split, "count", f"{name} has {length} rows, images {n}"))
        if any(length != n for length in lengths.values()):
            continue
        labels = group["labels"][:]
        if labels.ndim == 1 and "stats" in group:
            count = np.bincount(labels, minlength=len(label_names)) if n else np.zeros(len(label_names), int)
            if not np.array_equal(group["stats/count"][:], count):
                report.problems.append(Finding(split, "stats", "stats/count does not match the labels"))
        paths = read_text(group["meta/path"], budget)
        _check_pixels(group, split, labels, paths, report, version)
        if sources:
            hashes = group["meta/file_hash"][:]
            for path, digest in zip(paths, hashes, strict=True):
                cached[str(path)] = bytes(digest)
    skipped: set[str] = set()
    if "skipped" in file and "path" in file["skipped"]:  # read either way: a reader refuses a hostile heap there
        skipped = {str(p) for p in read_text(file["skipped/path"], budget)}
    return cached, skipped


def _check_pixels(
    group: RowsGroup, split: str, labels: np.ndarray, paths: np.ndarray, report: VerifyReport, version: int
) -> None:
    """Checksums (as format ``version`` computes them), per-image min/max and the per-label histogram
    against the stored pixels, block by block."""
    images = group["images"]
    n = images.shape[0]
    if n == 0:
        return
    has_checksums = "checksums" in group
    if not has_checksums:
        report.unchecked.append(f"{split}: no stored checksums (file written before they existed)")
    stored_sums = group["checksums"][:] if has_checksums else None
    descriptors = group.get("descriptors")
    if descriptors is None:
        report.unchecked.append(f"{split}: no near-duplicate descriptors (file written before they existed)")
    lows, highs = group["meta/min"][:], group["meta/max"][:]
    hist = np.zeros(group["stats/hist"].shape, dtype=np.int64) if "stats/hist" in group else None
    per_image = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
    stored_per_image = per_image + (DESCRIPTOR_SIDE * DESCRIPTOR_SIDE if descriptors is not None else 0)
    block = max(1, BLOCK_BYTES // stored_per_image)  # pixels and descriptors read per block
    # descriptors computed a step at a time: 8 KB each in float64 while computed, whatever the image's size
    step = max(1, BLOCK_BYTES // max(per_image * 8, DESCRIPTOR_SIDE * DESCRIPTOR_SIDE * 8))
    if images.chunks:  # whole chunks of images (at most 64 MB, open_cache checks): each decompressed once
        block = -(-block // images.chunks[0]) * images.chunks[0]
    # Not rounded to the descriptors' chunks: they may be 64 MB of rows (65,536 images), and the block is
    # images; a descriptor chunk longer than the block is decompressed again per block (CPU, not memory).
    for start in range(0, n, block):
        pixels = images[start : start + block]
        stop = start + len(pixels)
        if stored_sums is not None:
            for offset, image in enumerate(pixels):
                row = start + offset
                if pixel_checksum(image, version) != bytes(stored_sums[row]):
                    report.problems.append(Finding(str(paths[row]), "checksum", f"{split}[{row}]: pixels do not match"))
        if descriptors is not None:  # the block at once; a mismatch confirmed by the one-image definition
            stored = descriptors[start:stop]
            differ = np.concatenate(
                [
                    np.flatnonzero((pixel_descriptors(pixels[i : i + step]) != stored[i : i + step]).any(axis=(1, 2)))
                    + i
                    for i in range(0, len(pixels), step)
                ]
            )
            for offset in differ.tolist():
                if not np.array_equal(pixel_descriptor(pixels[offset]), stored[offset]):
                    row = start + offset
                    report.problems.append(
                        Finding(str(paths[row]), "descriptor", f"{split}[{row}]: descriptor does not match the pixels")
                    )
        wrong = (pixels.min(axis=(1, 2)) != lows[start:stop]) | (pixels.max(axis=(1, 2)) != highs[start:stop])
        for row in (np.flatnonzero(wrong) + start).tolist():
            report.problems.append(Finding(str(paths[row]), "meta", f"{split}[{row}]: min/max do not match"))
        if hist is not None and labels.ndim == 1 and hist.shape[-1] == 256 and pixels.dtype == np.uint8:
            block_labels = labels[start : start + block]
            for label in np.unique(block_labels):
                hist[int(label)] += np.bincount(pixels[block_labels == label].ravel(), minlength=256)
    checked_hist = hist is not None and labels.ndim == 1 and hist.shape[-1] == 256 and images.dtype == np.uint8
    if checked_hist and hist is not None and not np.array_equal(hist, group["stats/hist"][:]):
        report.problems.append(Finding(split, "stats", "stats/hist does not match the pixels"))


def _count_near_duplicates(file: CacheFiles, report: VerifyReport) -> None:
    """The near-duplicate pairs within and across splits, for the summary (when every split has descriptors)."""
    if not all("descriptors" in file[split] for split in report.splits):
        return
    report.near_duplicates_unsearched = search_refused(report.images, SEARCH_IMAGES)
    if report.near_duplicates_unsearched:
        return
    budget = cache_bytes(Path(file.filename), file.attrs)
    columns = {
        split: {name: read_text(file[split]["meta"][name], budget) for name in ("path", "patient")}
        | {"file_hash": file[split]["meta/file_hash"][:]}
        for split in report.splits
    }
    descriptors = {split: file[split]["descriptors"][:] for split in report.splits}
    pixels = {split: file[split]["images"].__getitem__ for split in report.splits}  # sorted rows: h5py reads them
    found = leakage(columns, descriptors, pixels=pixels, max_checked=SEARCH_PAIRS)
    if found.near_duplicates_unavailable:
        report.near_duplicates_unsearched = found.near_duplicates_unavailable
        return
    report.near_duplicates_across = len(found.near_duplicates_across)
    report.near_duplicates_within = len(found.near_duplicates) - report.near_duplicates_across


def _check_sources(
    src: Path, attrs: dict[str, Any], cached: dict[str, bytes], skipped: set[str], report: VerifyReport
) -> None:
    """Re-hash every source file and compare with the recorded hashes: missing, new, changed.

    A cache whose tables chose the images (layout ``table``) is checked file by file: the tables, not the
    folders, say what belongs in it, so files beside them are not "new".
    """
    if attrs.get("layout") == "table":
        paths = sorted(cached) + sorted(skipped)
    else:
        classes = attrs.get("classes", "auto")
        found = scan(src, classes if classes in ("auto", "binary", "three") else "auto")
        paths = [source.path for source in found.files]
    root = src.resolve()
    seen: set[str] = set()
    for path in paths:
        key = storable_path(path)
        outside = path.startswith("/") or ".." in PurePosixPath(path).parts  # a hostile cache's path: never read
        if attrs.get("layout") == "table" and (outside or not (root / path).exists()):
            continue
        seen.add(key)
        if key not in cached:
            if key not in skipped:
                report.new.append(key)
            continue
        try:
            digest = file_sha256(root / path)
        except OSError:
            report.changed.append(key)
            continue
        if digest != cached[key]:
            report.changed.append(key)
    report.missing = sorted(key for key in cached if key not in seen)

"""The cache file format: its names, columns, checksums and histograms, and the one validating open.

Layout (``h5ls -r`` in the README): per split, ``images`` (N, H, W) uint8 or uint16, ``labels`` (N,) or
(N, C) multi-hot, ``checksums`` and a ``meta`` group of per-image provenance columns; ``stats`` holds
per-label pixel histograms; ``/skipped`` lists the files the build could not take. A sharded cache joins
its shard files (in a folder beside it) with virtual datasets. Both the build (to update an OUT) and
every reader open a cache through :func:`open_cache`, and read attributes through :func:`attr_value`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import InputError, NotACacheError

FORMAT_NAME = "xraycache"
FORMAT_VERSION = 1
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
STR = h5py.string_dtype("utf-8")
HASH = np.dtype("S64")
CHECKSUM = np.dtype("S32")  # blake2b-128 of each stored image, hex: what ``verify`` checks
CHECKSUM_DESCRIPTION = "blake2b (16-byte digest, hex) of the stored (H, W) uint8 (or uint16, --dtype) image, C order"
HIST_BINS = 256
HASH_BLOCK = 1 << 20
SKIPPED_COLUMNS = ("path", "split", "reason")

# Root attributes that are not build options but decide what a build produces: an incremental rebuild
# reuses an old cache only when these and every recorded option (BuildOptions.settings) match.
CONTEXT_SETTINGS = (
    "source_root",
    "imaging_backend",
    "format_version",
    "tool_version",
    "pseudonym_key_id",
    "labels_csv_sha256",
    "label_kind",
)

# The per-image provenance columns of ``/<split>/meta``: name -> dtype.
META_COLUMNS: dict[str, Any] = {
    "path": STR,  # source path relative to SRC (non-UTF-8 bytes as \xNN escapes)
    "patient": STR,
    "width": np.int32,  # of the original, after EXIF orientation
    "height": np.int32,
    "mode": STR,  # Pillow mode of the original (L, RGB, I;16, ...)
    "file_size": np.int64,
    "file_hash": HASH,  # sha256 of the source file, hex
    "mtime_ns": np.int64,
    "min": np.uint8,  # statistics of the stored image (uint16 for a uint16 cache)
    "max": np.uint8,
    "mean": np.float32,
    "std": np.float32,
    "format": STR,  # JPEG, PNG or DICOM
    "window": STR,  # the high-bit window applied, e.g. "dicom window 2048/4096 linear" or "none (8-bit)"
    "bits_stored": np.int16,
    "modality": STR,  # DICOM only, else ""
    "view_position": STR,
    "photometric": STR,
    "study": STR,  # DICOM StudyInstanceUID (a pseudonym unless --keep-identifiers)
    "source_split": STR,  # the split folder the file came from (differs from the split after --resplit)
    "fold": np.int16,  # patient-grouped cross-validation fold (--folds), -1 without
}


def meta_columns(dtype: str = "uint8") -> dict[str, Any]:
    """META_COLUMNS for a cache of ``dtype`` images (the pixel min/max columns take the image dtype)."""
    columns = dict(META_COLUMNS)
    if dtype == "uint16":
        columns["min"] = columns["max"] = np.uint16
    return columns


def storable_path(path: str) -> str:
    """A path as text HDF5 can store: names that are not valid UTF-8 keep their bytes as escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# -- per-image values ---------------------------------------------------------------------


def pixel_checksum(pixels: np.ndarray) -> bytes:
    """Checksum of one stored image (the ``checksums`` dataset), as hex bytes."""
    dtype = np.uint16 if pixels.dtype == np.uint16 else np.uint8
    return hashlib.blake2b(np.ascontiguousarray(pixels, dtype=dtype).data, digest_size=16).hexdigest().encode("ascii")


def hist_bin_width(dtype: str | np.dtype[Any]) -> int:
    """Width of one of the 256 histogram bins: 1 for uint8 images, 256 for uint16 (bins of ``value >> 8``)."""
    return 256 if np.dtype(dtype) == np.uint16 else 1


def pixel_hist(pixels: np.ndarray) -> np.ndarray:
    """(256,) int64 histogram of stored pixels; uint16 pixels are binned by their high byte."""
    values = pixels.ravel()
    if values.dtype == np.uint16:
        values = values >> 8
    return np.bincount(values, minlength=HIST_BINS).astype(np.int64)


def hist_moments(hist: np.ndarray) -> tuple[int, int, float, float]:
    """Exact (min, max, mean, std) of uint8 pixels from their 256-bin histogram."""
    nonzero = np.flatnonzero(hist)
    if nonzero.size == 0:
        return 0, 0, 0.0, 0.0
    values = np.arange(hist.size, dtype=np.float64)
    count = float(hist.sum())
    mean = float(values @ hist) / count
    var = max(float((values * values) @ hist) / count - mean * mean, 0.0)
    return int(nonzero[0]), int(nonzero[-1]), mean, var**0.5


def pixel_moments(pixels: np.ndarray) -> tuple[int, int, float, float]:
    """Exact (min, max, mean, std) of one image, straight from its pixels."""
    if pixels.size == 0:
        return 0, 0, 0.0, 0.0
    values = pixels.astype(np.float64)
    return int(pixels.min()), int(pixels.max()), float(values.mean()), float(values.std())


def file_sha256(path: str | os.PathLike[str]) -> bytes:
    """Hex sha256 of a file's bytes (the ``file_hash`` column), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest().encode("ascii")


# -- attributes ---------------------------------------------------------------------------


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as plain Python: str, int, float, or a tuple of those for arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return tuple(attr_value(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """Every attribute of a file, group or dataset, decoded by :func:`attr_value`."""
    return {key: attr_value(value) for key, value in obj.attrs.items()}


def shard_count(attrs: Any) -> int:
    """How many shards a cache file (its root attributes) is joined from; 1 for a single file."""
    try:
        return int(attr_value(attrs.get("shards", 1)))
    except (TypeError, ValueError):
        return 1


def shard_paths(path: Path, attrs: Any) -> list[Path]:
    """The shard files a sharded cache at ``path`` reads from (empty for a single-file cache)."""
    if "shard_files" not in attrs:
        return []
    folder = path.parent / str(attr_value(attrs["shard_dir"]))
    names = attr_value(np.atleast_1d(attrs["shard_files"]))
    return [folder / str(name) for name in names]


def missing_shard_message(path: Path, attrs: Any) -> str | None:
    """A one-line error when a shard file of the cache at ``path`` is missing, else None."""
    missing = [p for p in shard_paths(path, attrs) if not p.is_file()]
    if not missing:
        return None
    folder = missing[0].parent.name
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return (
        f"{path}: shard {folder}/{missing[0].name} is missing{more}; HDF5 would read zeros in its place. "
        f"Keep {folder}/ beside {path.name} (move or copy them together), or rebuild"
    )


# -- the one validating open ----------------------------------------------------------------

BUILD_HINT = "give a cache written by `xraycache build SRC OUT`"


def open_cache(path: str | os.PathLike[str]) -> h5py.File:
    """Open ``path`` read-only as an xraycache file, or raise a one-line error saying what it is instead.

    InputError when nothing usable is at the path (missing, a folder); NotACacheError for a file that is
    not HDF5, a damaged or truncated one, another tool's, a newer format, or a sharded cache with a shard
    missing (HDF5 would read zeros for it).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; {BUILD_HINT}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; {BUILD_HINT}")
    try:
        with open(path, "rb") as handle:
            signature = handle.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if signature != HDF5_SIGNATURE:
        raise NotACacheError(f"{path} is not an HDF5 file; {BUILD_HINT}")
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc) else "damaged"
        raise NotACacheError(f"{path} is a {reason} HDF5 file that cannot be opened; rebuild it") from None
    try:
        if attr_value(file.attrs.get("format", "")) != FORMAT_NAME:
            raise NotACacheError(f"{path} is an HDF5 file written by another tool, not an xraycache cache")
        try:
            version = int(attr_value(file.attrs.get("format_version", 0)))
        except (TypeError, ValueError):
            raise NotACacheError(f"{path}: format_version is not a number; rebuild it") from None
        if version > FORMAT_VERSION:
            raise NotACacheError(
                f"{path} has format version {version}, newer than this xraycache reads ({FORMAT_VERSION}); upgrade it"
            )
        missing = missing_shard_message(path, file.attrs)
        if missing:
            raise NotACacheError(missing)
    except BaseException:
        file.close()
        raise
    return file


def hdf5_versions() -> tuple[str, str]:
    """(h5py version, HDF5 library version) of this process."""
    return h5py.__version__, h5py.version.hdf5_version

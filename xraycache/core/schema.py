"""The cache file's schema: its name and version, the datasets and columns every split holds, and the root
attributes a build records (and which of them an incremental rebuild must find unchanged).

Layout (``h5ls -r`` in docs): per split, ``images`` (N, H, W) uint8 or uint16, ``labels`` (N,) or (N, C)
multi-hot, ``checksums``, ``descriptors`` and a ``meta`` group of per-image provenance columns; ``stats``
holds per-label pixel histograms; ``/skipped`` lists the files the build could not take. A sharded cache
joins its shard files (in a folder beside it) with virtual datasets (``shard_files.py``).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

# What a cache's names may be: defined in names.py, which the option checks use without loading h5py.
from .names import MAX_LABELS as MAX_LABELS
from .names import MAX_NAME_CHARS as MAX_NAME_CHARS
from .names import MAX_SPLITS as MAX_SPLITS
from .names import RESERVED_SPLIT_NAMES as RESERVED_SPLIT_NAMES
from .names import split_name_problem as split_name_problem

FORMAT_NAME = "xraycache"
# 2: near-duplicate descriptors; patient ids from NIH file names (00001315_006.png: 00001315).
# 3: CRC-32 image checksums (blake2b-128 before: four times the CPU, for no better detection of accidents).
# 4: the "coded" label kind: (N, C) int8 labels, 1 positive, 0 negative, -1 uncertain, -2 missing.
FORMAT_VERSION = 4
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
STR = h5py.string_dtype("utf-8")
HASH = np.dtype("S64")
CHECKSUM = np.dtype("S8")  # CRC-32 of each stored image, 8 hex digits: what ``verify`` checks
CHECKSUM_DESCRIPTION = "CRC-32 (zlib, 8 hex digits) of the stored (H, W) uint8 (or uint16, --dtype) image, C order"
BLAKE2B_BEFORE = 3  # files of an older format version store blake2b-128 (32 hex digits) instead
HIST_BINS = 256
# label_kind: "single" (N,) int16 indices, "multi" (N, C) uint8 multi-hot, "coded" (N, C) int8 codes.
LABEL_KINDS = ("single", "multi", "coded")
CODE_POSITIVE, CODE_NEGATIVE, CODE_UNCERTAIN, CODE_MISSING = 1, 0, -1, -2
CODES = (CODE_POSITIVE, CODE_NEGATIVE, CODE_UNCERTAIN, CODE_MISSING)
MAX_ANNOTATORS = 64  # annotators of one image a cache keeps (--annotator-col; VinDr-CXR has 3, 5 on its test set)
ANNOTATORS_DESCRIPTION = "annotators[i, k]: who gave annotator_labels[i, k], an index into annotator_names (-1: empty)"
ANNOTATOR_LABELS_DESCRIPTION = (
    "annotator_labels[i, k, c]: annotator k's code for label_names[c] on image i, 1 positive, 0 negative, "
    "-1 uncertain, -2 missing (every code -2 in an empty slot)"
)
CODED_DESCRIPTION = (
    "coded: labels[i, c] is 1 (positive), 0 (negative), -1 (uncertain) or -2 (missing) for label_names[c]"
)
SKIPPED_COLUMNS = ("path", "split", "reason")
DESCRIPTOR_SIDE = 32  # ``descriptors``: a (32, 32) uint8 thumbnail per image, for the near-duplicate search
DESCRIPTOR_DESCRIPTION = (
    "32x32 area-average thumbnail of the stored image (uint8): the near-duplicate search compares these"
)


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

# The order root attributes are written in (HDF5 keeps it in the file; readers see them by name). Others follow.
ROOT_ATTRIBUTE_ORDER = (
    "format",
    "format_version",
    "label_names",
    "splits",
    "tool_version",
    "created",
    "build_id",
    "size",
    "fit",
    "filter",
    "classes",
    "layout",
    "compression",
    "max_pixels",
    "imaging_backend",
    "libjpeg",
    "h5py_version",
    "hdf5_version",
    "source_root",
    "command",
    "ignored_files",
    "window",
    "dtype",
    "identifiers",
    "pseudonym_key_id",
    "labels_csv",
    "labels_csv_sha256",
    "labels_columns",
    "label_kind",
    "annotator_names",
    "resplit",
    "seed",
    "folds",
    "csv_rows_without_file",
)


def attribute_rank(key: str) -> int:
    """Where a root attribute goes in ROOT_ATTRIBUTE_ORDER (unknown ones last, in the order given)."""
    return ROOT_ATTRIBUTE_ORDER.index(key) if key in ROOT_ATTRIBUTE_ORDER else len(ROOT_ATTRIBUTE_ORDER)


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
    if path.isascii():  # no escapes to make: the string itself, not a copy (tables hold millions of cells)
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def hdf5_versions() -> tuple[str, str]:
    """(h5py version, HDF5 library version) of this process."""
    return h5py.__version__, h5py.version.hdf5_version

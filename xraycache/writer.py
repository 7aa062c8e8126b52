"""Stream decoded images into one HDF5 file, written beside OUT and renamed into place when complete.

Layout (``h5ls -r`` in the README): per split, ``images`` (N, H, W) uint8, ``labels`` (N,) and a
``meta`` group of per-image provenance columns; ``stats`` holds per-class pixel histograms summed
while writing; ``/skipped`` lists the files the build could not take. Uncompressed image arrays
are contiguous, which makes whole-split and shuffled-batch reads run at memory speed (see
benchmarks/); compressed ones are chunked a few images per chunk.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from .decode import DecodedImage
from .scan import SourceFile
from .window import hist_bin_width, pixel_hist, pixel_moments

FORMAT_NAME = "xraycache"
FORMAT_VERSION = 1
Compression = Literal["none", "gzip", "lzf"]
COMPRESSED_CHUNK_IMAGES = 8
FLUSH_EVERY = 64  # images buffered per split before one slab write
STR = h5py.string_dtype("utf-8")
HASH = np.dtype("S64")
CHECKSUM = np.dtype("S32")  # blake2b-128 of each stored image, hex: what ``verify`` checks
CHECKSUM_DESCRIPTION = "blake2b (16-byte digest, hex) of the stored (H, W) uint8 (or uint16, --dtype) image, C order"

# name -> (dtype, value taken from a DecodedImage / SourceFile)
META_COLUMNS: dict[str, Any] = {
    "path": STR,
    "patient": STR,
    "width": np.int32,
    "height": np.int32,
    "mode": STR,
    "file_size": np.int64,
    "file_hash": HASH,
    "mtime_ns": np.int64,
    "min": np.uint8,
    "max": np.uint8,
    "mean": np.float32,
    "std": np.float32,
    # provenance of issue 7 (sources.py, dicom.py, window.py): how the pixels were made, and where from
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


def storable_path(path: str) -> str:
    """A path as text HDF5 can store: names that are not valid UTF-8 keep their bytes as escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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


def pixel_checksum(pixels: np.ndarray) -> bytes:
    """Checksum of one stored image (the ``checksums`` dataset), as hex bytes."""
    dtype = np.uint16 if pixels.dtype == np.uint16 else np.uint8
    return hashlib.blake2b(np.ascontiguousarray(pixels, dtype=dtype).data, digest_size=16).hexdigest().encode("ascii")


def meta_columns(dtype: str = "uint8") -> dict[str, Any]:
    """META_COLUMNS for a cache of ``dtype`` images (pixel min/max columns take the image dtype)."""
    columns = dict(META_COLUMNS)
    if dtype == "uint16":
        columns["min"] = columns["max"] = np.uint16
    return columns


def _meta_row(image: DecodedImage, source: SourceFile) -> dict[str, Any]:
    lo, hi, mean, std = hist_moments(image.hist) if image.pixels.dtype == np.uint8 else pixel_moments(image.pixels)
    info = image.info
    return {
        "path": storable_path(source.path),
        "patient": storable_path(source.patient),
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "file_size": image.file_size,
        "file_hash": image.file_hash.encode("ascii"),
        "mtime_ns": image.mtime_ns,
        "min": lo,
        "max": hi,
        "mean": mean,
        "std": std,
        "format": info.get("format", ""),
        "window": info.get("window", ""),
        "bits_stored": info.get("bits_stored", 0),
        "modality": storable_path(info.get("modality", "")),
        "view_position": storable_path(info.get("view_position", "")),
        "photometric": info.get("photometric", ""),
        "study": storable_path(source.study),
        "source_split": storable_path(source.source_split or source.split),
        "fold": source.fold,
    }


@dataclass
class _SplitState:
    group: h5py.Group
    capacity: int
    written: int = 0


class CacheWriter:
    """Writes one cache file; ``commit()`` renames it into place, ``abort()`` leaves no trace.

    Use as a context manager: leaving the block by an exception aborts.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        capacities: Mapping[str, int],
        label_names: tuple[str, ...],
        image_shape: tuple[int, int],
        attrs: Mapping[str, Any],
        compression: Compression = "none",
        dtype: str = "uint8",
        multi_label: bool = False,
    ) -> None:
        self.out = Path(out)
        self.dtype = np.dtype(dtype)
        self.multi_label = multi_label  # labels stored as (N, C) uint8 multi-hot
        self.columns = meta_columns(dtype)
        self.label_names = label_names
        self.image_shape = image_shape
        self.compression = compression
        fd, tmp = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent)
        try:
            os.fchmod(fd, _output_mode(self.out))
        finally:
            os.close(fd)
        self.tmp_path = Path(tmp)
        self._splits: dict[str, _SplitState] = {}
        self._buffers: dict[str, list[tuple[DecodedImage, SourceFile]]] = {}
        self._hist: dict[str, np.ndarray] = {}
        self._skipped: list[tuple[str, str, str]] = []
        try:
            self._file = h5py.File(self.tmp_path, "w", libver=("v110", "latest"))
        except BaseException:
            self.tmp_path.unlink(missing_ok=True)
            raise
        try:
            root = self._file.attrs
            root["format"] = FORMAT_NAME
            root["format_version"] = FORMAT_VERSION
            root["label_names"] = np.array(label_names, dtype=STR)
            root["splits"] = np.array(list(capacities), dtype=STR)
            for key, value in attrs.items():
                root[key] = value
            for split, capacity in capacities.items():
                self._create_split(split, capacity)
        except BaseException:
            self.abort()
            raise

    def _create_split(self, split: str, capacity: int) -> None:
        group = self._file.create_group(split)
        height, width = self.image_shape
        kwargs: dict[str, Any] = {}
        if self.compression != "none":
            kwargs = {
                "chunks": (min(COMPRESSED_CHUNK_IMAGES, capacity), height, width),
                "compression": self.compression,
            }
        group.create_dataset("images", shape=(capacity, height, width), dtype=self.dtype, **kwargs)
        if self.multi_label:
            labels = group.create_dataset("labels", shape=(capacity, len(self.label_names)), dtype=np.uint8)
            labels.attrs["description"] = "multi-hot: labels[i, c] = 1 when image i has label_names[c]"
        else:
            group.create_dataset("labels", shape=(capacity,), dtype=np.int16)
        meta = group.create_group("meta")
        for name, dtype in self.columns.items():
            meta.create_dataset(name, shape=(capacity,), dtype=dtype)
        checksums = group.create_dataset("checksums", shape=(capacity,), dtype=CHECKSUM)
        checksums.attrs["description"] = CHECKSUM_DESCRIPTION
        self._splits[split] = _SplitState(group, capacity)
        self._buffers[split] = []
        self._hist[split] = np.zeros((len(self.label_names), 256), dtype=np.int64)

    def add(self, image: DecodedImage, source: SourceFile) -> None:
        """Queue one decoded image; images are written in the order they are added."""
        buffer = self._buffers[source.split]
        buffer.append((image, source))
        for label in source.labels if self.multi_label else (source.label,):
            self._hist[source.split][label] += image.hist
        if len(buffer) >= FLUSH_EVERY:
            self._flush(source.split)

    def add_rows(
        self,
        split: str,
        pixels: np.ndarray,
        labels: np.ndarray,
        meta: Mapping[str, np.ndarray],
        checksums: np.ndarray | None = None,
    ) -> None:
        """Write a block of already-decoded rows (copied from an older cache) after those queued so far.

        ``meta`` holds every META_COLUMNS column for the block; checksums are computed when not given.
        """
        self._flush(split)
        count = len(labels)
        if count == 0:
            return
        state = self._splits[split]
        start, stop = state.written, state.written + count
        if stop > state.capacity:
            raise ValueError(f"split {split}: {stop} rows do not fit a capacity of {state.capacity}")
        group = state.group
        group["images"][start:stop] = pixels
        group["labels"][start:stop] = labels
        for name, dtype in self.columns.items():
            group["meta"][name][start:stop] = np.asarray(meta[name], dtype=dtype)
        if checksums is None:
            checksums = np.array([pixel_checksum(image) for image in pixels], dtype=CHECKSUM)
        group["checksums"][start:stop] = checksums
        hist = self._hist[split]
        if labels.ndim == 2:  # multi-hot: an image counts for each of its labels
            for label in np.flatnonzero(labels.any(axis=0)):
                hist[int(label)] += pixel_hist(pixels[labels[:, label] == 1])
        else:
            for label in np.unique(labels):
                hist[int(label)] += pixel_hist(pixels[labels == label])
        state.written = stop

    def label_rows(self, sources: list[SourceFile]) -> np.ndarray:
        """The ``labels`` rows of some files: label indices, or multi-hot rows for a multi-label cache."""
        if not self.multi_label:
            return np.array([source.label for source in sources], dtype=np.int16)
        rows = np.zeros((len(sources), len(self.label_names)), dtype=np.uint8)
        for row, source in zip(rows, sources, strict=True):
            row[list(source.labels)] = 1
        return rows

    def add_skipped(self, path: str, split: str, reason: str) -> None:
        """Record a file the build could not take, and why."""
        self._skipped.append((storable_path(path), split, reason))

    def _flush(self, split: str) -> None:
        buffer = self._buffers[split]
        if not buffer:
            return
        state = self._splits[split]
        start, stop = state.written, state.written + len(buffer)
        group = state.group
        group["images"][start:stop] = np.stack([image.pixels for image, _ in buffer])
        group["labels"][start:stop] = self.label_rows([source for _, source in buffer])
        rows = [_meta_row(image, source) for image, source in buffer]
        for name, dtype in self.columns.items():
            group["meta"][name][start:stop] = np.array([row[name] for row in rows], dtype=dtype)
        group["checksums"][start:stop] = np.array([pixel_checksum(image.pixels) for image, _ in buffer], dtype=CHECKSUM)
        state.written = stop
        buffer.clear()

    def _finish_split(self, split: str) -> None:
        self._flush(split)
        state = self._splits[split]
        stats = state.group.create_group("stats")
        stats.create_dataset("hist", data=self._hist[split])
        stats["hist"].attrs["description"] = "pixel histogram of the stored images, per label (label, value)"
        stats["hist"].attrs["bin_width"] = hist_bin_width(self.dtype)  # 256 for uint16: bins of value >> 8
        labels = state.group["labels"][: state.written]
        if labels.ndim == 2:
            count = labels.sum(axis=0, dtype=np.int64)
        else:
            count = np.bincount(labels, minlength=len(self.label_names))
        stats.create_dataset("count", data=count)

    def _write_skipped(self) -> None:
        group = self._file.create_group("skipped")
        for index, name in enumerate(("path", "split", "reason")):
            group.create_dataset(name, data=np.array([row[index] for row in self._skipped], dtype=object), dtype=STR)

    def commit(self, extra_attrs: Mapping[str, Any] | None = None) -> Path:
        """Finish the file (summaries, exact sizes), make it durable, and rename it to OUT."""
        for split in self._splits:
            self._finish_split(split)
        self._write_skipped()
        for key, value in (extra_attrs or {}).items():
            self._file.attrs[key] = value
        needs_compaction = any(s.written < s.capacity for s in self._splits.values())
        self._file.close()
        if needs_compaction:
            self._compact()
        with open(self.tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp_path, self.out)
        _fsync_dir(self.out.parent)
        return self.out

    def _compact(self) -> None:
        """Copy into a new file whose datasets hold exactly the written rows (files were skipped).

        Contiguous datasets cannot shrink in place; this copy happens only when some file was
        skipped, and it moves blocks of images so memory stays bounded.
        """
        written = {name: state.written for name, state in self._splits.items()}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent)
        try:
            os.fchmod(fd, _output_mode(self.out))
        finally:
            os.close(fd)
        compact_path = Path(tmp)
        try:
            with h5py.File(self.tmp_path, "r") as src, h5py.File(compact_path, "w", libver=("v110", "latest")) as dst:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    if name not in written:
                        src.copy(src[name], dst, name=name)
                        continue
                    _copy_rows(src[name], dst.create_group(name), written[name])
        except BaseException:
            compact_path.unlink(missing_ok=True)
            raise
        os.replace(compact_path, self.tmp_path)

    def abort(self) -> None:
        """Close and delete the temporary file; OUT is left as it was.

        Errors while closing (a full disk cannot take the final flush) are ignored: the file goes anyway.
        """
        try:
            self._file.close()
        except Exception:
            pass
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def _copy_rows(src: h5py.Group, dst: h5py.Group, rows: int, block: int = 1024) -> None:
    """Copy a split group, keeping only the first ``rows`` entries of its per-image datasets."""
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            if name == "meta":
                _copy_rows(item, dst.create_group(name), rows, block)
            else:
                src.copy(item, dst, name=name)
            continue
        kwargs: dict[str, Any] = {}
        if item.chunks is not None and item.compression is not None and rows > 0:
            kwargs = {"chunks": (min(item.chunks[0], rows), *item.chunks[1:]), "compression": item.compression}
        out = dst.create_dataset(name, shape=(rows, *item.shape[1:]), dtype=item.dtype, **kwargs)
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            out[start:stop] = item[start:stop]


def _output_mode(out: Path) -> int:
    """Permissions for the new OUT: those of the file it replaces, else 0666 less the umask.

    (mkstemp creates 0600 files, which would hide a shared cache from everyone else.)
    """
    try:
        return out.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(out: Path, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete temporary files a killed build left beside OUT (``.OUT.*.tmp``)."""
    removed = []
    skip = {Path(p) for p in keep}
    for candidate in out.parent.glob(f".{out.name}.*.tmp"):
        if candidate not in skip:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed

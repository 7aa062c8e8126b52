"""Writing one cache file: decoded images and copied rows streamed in, renamed into place when complete.

``CacheWriter`` writes the format of ``core/schema.py`` into a temporary file beside OUT (``AtomicFile``):
uncompressed image arrays are contiguous, which makes whole-split and shuffled-batch reads run at memory
speed; compressed ones are chunked a few images per chunk. Pixels are copied into one warm slab per split
and written as it fills; the other columns are queued and written every FLUSH_ROWS images, since each
h5py call has a fixed cost whatever its size (``python -m benchmarks.hotpath --sections stages``, stage
``write``). What to write comes from the build (``execute.py``); what to do with the finished file
(rewrite it into fewer rows, rename it) from ``commit.py``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..core.atomic import AtomicFile
from ..core.errors import Skipped
from ..core.options import Compression
from ..core.pixels import (
    add_label_hist,
    hist_bin_width,
    hist_moments,
    pixel_checksum,
    pixel_descriptor,
    pixel_moments,
)
from ..core.schema import (
    ANNOTATOR_LABELS_DESCRIPTION,
    ANNOTATORS_DESCRIPTION,
    CHECKSUM,
    CHECKSUM_DESCRIPTION,
    CODED_DESCRIPTION,
    DESCRIPTOR_DESCRIPTION,
    DESCRIPTOR_SIDE,
    FORMAT_NAME,
    FORMAT_VERSION,
    SKIPPED_COLUMNS,
    STR,
    attribute_rank,
    meta_columns,
    storable_path,
)
from ..imaging.result import DecodedImage
from .regroup import Rows
from .scan import SourceFile

if TYPE_CHECKING:
    from .job import BuildJob

COMPRESSED_CHUNK_IMAGES = 8  # images per chunk of a compressed ``images`` dataset
SLAB_BYTES = 2 << 20  # pixels written at a time (whole chunks when compressed): little is left after the last decode
FLUSH_ROWS = 1024  # images whose other columns are written at a time


def _meta_row(image: DecodedImage, source: SourceFile) -> dict[str, Any]:
    """The meta columns of one decoded image."""
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
        "view_position": storable_path(source.view or info.get("view_position", "")),
        "photometric": info.get("photometric", ""),
        "study": storable_path(source.study),
        "source_split": storable_path(source.source_split or source.split),
        "fold": source.fold,
    }


@dataclass
class _Queued:
    """One image waiting for the next flush, but for its pixels (in the split's slab, or written)."""

    row: dict[str, Any]  # its meta columns
    checksum: bytes
    descriptor: np.ndarray
    source: SourceFile


@dataclass
class _SplitState:
    group: h5py.Group
    capacity: int
    slab: np.ndarray  # (slab rows, H, W): the images not yet written, copied in as they come (one warm buffer)
    queued: list[_Queued] = dataclasses.field(default_factory=list)  # the rows after ``written``
    written: int = 0  # rows whose every column is in the file
    in_slab: int = 0  # images in ``slab``: the last of the queued rows


class CacheWriter:
    """Writes one cache file into ``output`` (an :class:`AtomicFile` beside OUT): ``add`` and ``add_rows``
    stream rows in, ``finish`` completes and closes the file, ``output.commit()`` then renames it over OUT
    (``commit.py``); ``abort()`` leaves no trace.

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
        coded: bool = False,
        annotator_slots: int = 0,
        annotator_names: tuple[str, ...] = (),
    ) -> None:
        self.out = Path(out)
        self.dtype = np.dtype(dtype)
        self.multi_label = multi_label or coded  # labels stored as (N, C): uint8 multi-hot, or int8 codes
        self.coded = coded
        self.annotator_slots = annotator_slots  # > 0: per-annotator labels kept (annotators, annotator_labels)
        self.annotator_index = {name: i for i, name in enumerate(annotator_names)}
        self.columns = meta_columns(dtype)
        self.label_names = label_names
        self.image_shape = image_shape
        self.compression = compression
        self.output = AtomicFile(self.out)
        self._splits: dict[str, _SplitState] = {}
        self._hist: dict[str, np.ndarray] = {}
        pixel_bytes = self.dtype.itemsize * image_shape[0] * image_shape[1]
        slab_rows = max(1, min(FLUSH_ROWS, SLAB_BYTES // max(1, pixel_bytes)))
        if compression != "none":  # whole chunks: a part of one is read back, decompressed and compressed again
            slab_rows = -(-slab_rows // COMPRESSED_CHUNK_IMAGES) * COMPRESSED_CHUNK_IMAGES
        self._slab_rows = slab_rows
        try:
            self._file = h5py.File(self.output.tmp, "w", libver=("v110", "latest"))
        except BaseException:
            self.output.abort()
            raise
        try:
            root = self._file.attrs
            root["format"] = FORMAT_NAME
            root["format_version"] = FORMAT_VERSION
            root["label_names"] = np.array(label_names, dtype=STR)
            if annotator_names:
                root["annotator_names"] = np.array(annotator_names, dtype=STR)
            root["splits"] = np.array(list(capacities), dtype=STR)
            for key in sorted(attrs, key=attribute_rank):  # a stable sort: unknown keys keep their order
                root[key] = attrs[key]
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
        if self.coded:
            labels = group.create_dataset("labels", shape=(capacity, len(self.label_names)), dtype=np.int8)
            labels.attrs["description"] = CODED_DESCRIPTION
        elif self.multi_label:
            labels = group.create_dataset("labels", shape=(capacity, len(self.label_names)), dtype=np.uint8)
            labels.attrs["description"] = "multi-hot: labels[i, c] = 1 when image i has label_names[c]"
        else:
            group.create_dataset("labels", shape=(capacity,), dtype=np.int16)
        if self.annotator_slots:
            shape = (capacity, self.annotator_slots)
            group.create_dataset("annotators", shape=shape, dtype=np.int16).attrs["description"] = (
                ANNOTATORS_DESCRIPTION
            )
            coded = group.create_dataset("annotator_labels", shape=(*shape, len(self.label_names)), dtype=np.int8)
            coded.attrs["description"] = ANNOTATOR_LABELS_DESCRIPTION
        meta = group.create_group("meta")
        for name, dtype in self.columns.items():
            meta.create_dataset(name, shape=(capacity,), dtype=dtype)
        checksums = group.create_dataset("checksums", shape=(capacity,), dtype=CHECKSUM)
        checksums.attrs["description"] = CHECKSUM_DESCRIPTION
        side = DESCRIPTOR_SIDE
        descriptors = group.create_dataset("descriptors", shape=(capacity, side, side), dtype=np.uint8)
        descriptors.attrs["description"] = DESCRIPTOR_DESCRIPTION
        slab = np.empty((min(self._slab_rows, max(1, capacity)), height, width), dtype=self.dtype)
        self._splits[split] = _SplitState(group, capacity, slab)
        self._hist[split] = np.zeros((len(self.label_names), 256), dtype=np.int64)

    def add(self, image: DecodedImage, source: SourceFile) -> None:
        """Queue one decoded image; images are written in the order they are added."""
        state = self._splits[source.split]
        slab = state.slab
        if image.pixels.shape != slab.shape[1:] or image.pixels.dtype != slab.dtype:
            raise ValueError(
                f"image of {image.pixels.shape} {image.pixels.dtype}, the cache stores {slab.shape[1:]} {slab.dtype}"
            )  # a copy would broadcast or cast it
        slab[state.in_slab] = image.pixels
        state.in_slab += 1
        state.queued.append(_Queued(_meta_row(image, source), image.checksum, image.descriptor, source))
        for label in source.labels if self.multi_label else (source.label,):
            self._hist[source.split][label] += image.hist
        if state.in_slab == len(slab):
            self._write_slab(state)
        if len(state.queued) >= FLUSH_ROWS:
            self._flush(source.split)

    def add_rows(
        self,
        split: str,
        pixels: np.ndarray,
        labels: np.ndarray,
        meta: Mapping[str, np.ndarray],
        checksums: np.ndarray | None = None,
        descriptors: np.ndarray | None = None,
        sources: list[SourceFile] | None = None,
    ) -> None:
        """Write a block of already-decoded rows (copied from an older cache) after those queued so far.

        ``meta`` holds every META_COLUMNS column for the block; checksums and descriptors are computed
        from the pixels when not given; ``sources``, the rows' files, give their per-annotator labels.
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
        self._write_annotators(group, start, sources or [])
        for name, dtype in self.columns.items():
            group["meta"][name][start:stop] = np.asarray(meta[name], dtype=dtype)
        if checksums is None:
            checksums = np.array([pixel_checksum(image) for image in pixels], dtype=CHECKSUM)
        group["checksums"][start:stop] = checksums
        if descriptors is None:
            descriptors = np.stack([pixel_descriptor(image) for image in pixels])
        group["descriptors"][start:stop] = descriptors
        add_label_hist(self._hist[split], pixels, labels)
        state.written = stop

    def label_rows(self, sources: list[SourceFile]) -> np.ndarray:
        """The ``labels`` rows of some files: label indices, multi-hot rows for a multi-label cache, or the codes."""
        if self.coded:
            return np.array([source.codes for source in sources], dtype=np.int8).reshape(len(sources), -1)
        if not self.multi_label:
            return np.array([source.label for source in sources], dtype=np.int16)
        rows = np.zeros((len(sources), len(self.label_names)), dtype=np.uint8)
        for row, source in zip(rows, sources, strict=True):
            row[list(source.labels)] = 1
        return rows

    def _write_annotators(self, group: h5py.Group, start: int, sources: list[SourceFile]) -> None:
        """The per-annotator rows of some files, from row ``start``: annotators (index into the root's
        ``annotator_names``, -1 in an empty slot) and their codes (-2 in an empty slot)."""
        if not self.annotator_slots:
            return
        ids = np.full((len(sources), self.annotator_slots), -1, dtype=np.int16)
        codes = np.full((len(sources), self.annotator_slots, len(self.label_names)), -2, dtype=np.int8)
        for i, source in enumerate(sources):
            for k, (who, given) in enumerate(source.annotators):
                ids[i, k] = self.annotator_index[who]
                codes[i, k] = given
        group["annotators"][start : start + len(sources)] = ids
        group["annotator_labels"][start : start + len(sources)] = codes

    def _write_slab(self, state: _SplitState) -> None:
        """Write the images in the slab: the last ``in_slab`` of the queued rows."""
        if state.in_slab:
            stop = state.written + len(state.queued)
            state.group["images"][stop - state.in_slab : stop] = state.slab[: state.in_slab]
            state.in_slab = 0

    def _flush(self, split: str) -> None:
        state = self._splits[split]
        buffer = state.queued
        if not buffer:
            return
        self._write_slab(state)
        start, stop = state.written, state.written + len(buffer)
        group = state.group
        group["labels"][start:stop] = self.label_rows([queued.source for queued in buffer])
        self._write_annotators(group, start, [queued.source for queued in buffer])
        meta = group["meta"]
        for name, dtype in self.columns.items():
            meta[name][start:stop] = np.array([queued.row[name] for queued in buffer], dtype=dtype)
        group["checksums"][start:stop] = np.array([queued.checksum for queued in buffer], dtype=CHECKSUM)
        group["descriptors"][start:stop] = np.stack([queued.descriptor for queued in buffer])
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
            count = (labels == 1).sum(axis=0, dtype=np.int64)  # positives
        else:
            count = np.bincount(labels, minlength=len(self.label_names))
        stats.create_dataset("count", data=count)

    def written_rows(self, split: str) -> Rows:
        """The rows written to ``split`` so far, as the near-duplicate regrouping reads them."""
        self._flush(split)
        state = self._splits[split]
        group, n = state.group, state.written
        meta = group["meta"]
        return Rows(
            paths=[str(p) for p in meta["path"].asstr()[:n]],
            patients=[str(p) for p in meta["patient"].asstr()[:n]],
            descriptors=group["descriptors"][:n],
            folds=meta["fold"][:n],
            pixels=group["images"].__getitem__,  # sorted rows, all below n: h5py reads them as they are
        )

    def finish(self, skipped: Sequence[Skipped] = ()) -> dict[str, int]:
        """Write what is left (each split's summaries, the ``/skipped`` list) and close the file; returns the
        rows written to each split. The file is then complete but for its rename (``output.commit()``),
        possibly after a rewrite into fewer rows (``rewrite.py``)."""
        for split in self._splits:
            self._finish_split(split)
        write_skipped(self._file, list(skipped))
        self._file.close()
        return {name: state.written for name, state in self._splits.items()}

    @property
    def capacities(self) -> dict[str, int]:
        """The rows each split was made for (the scan's count; fewer are written when files are skipped)."""
        return {name: state.capacity for name, state in self._splits.items()}

    def abort(self) -> None:
        """Close and delete the temporary file; OUT is left as it was.

        Errors while closing (a full disk cannot take the final flush) are ignored: the file goes anyway.
        """
        try:
            self._file.close()
        except Exception:
            pass
        finally:
            self.output.abort()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def open_writer(job: BuildJob) -> CacheWriter:
    """The writer of ``job.out``, its splits sized for every scanned file (fewer rows are kept when some
    are skipped)."""
    found, spec = job.found, job.resize
    capacities = {split: 0 for split in found.splits}
    for f in found.files:
        capacities[f.split] += 1
    return CacheWriter(
        job.out,
        capacities=capacities,
        label_names=found.label_names,
        image_shape=(spec.size, spec.size),
        attrs=job.attrs,
        compression=job.compression,
        dtype=spec.dtype,
        multi_label=found.multi_label,
        coded=found.coded,
        annotator_slots=found.annotator_slots,
        annotator_names=found.annotator_names,
    )


def write_skipped(file: h5py.File, rows: list[Skipped]) -> None:
    """The ``/skipped`` group: one string column per field of the skipped rows."""
    group = file.create_group("skipped")
    for index, name in enumerate(SKIPPED_COLUMNS):
        group.create_dataset(name, data=np.array([row[index] for row in rows], dtype=object), dtype=STR)

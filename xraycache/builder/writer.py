"""Stream decoded images into one HDF5 cache file, written beside OUT and renamed into place when complete.

``CacheWriter`` writes one file in the format of ``core/schema.py``: uncompressed image arrays are
contiguous, which makes whole-split and shuffled-batch reads run at memory speed (see benchmarks/);
compressed ones are chunked a few images per chunk. ``write_plan`` runs a build's plan through one
writer: runs of unchanged images copied from the old cache, the other files decoded by the workers, in
scan order; the single-file build and every shard of a sharded build use it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..core.atomic import AtomicFile
from ..core.errors import Skipped
from ..core.options import Compression
from ..core.pixels import hist_bin_width, hist_moments, pixel_checksum, pixel_descriptor, pixel_hist, pixel_moments
from ..core.reads import read_text
from ..core.schema import (
    CHECKSUM,
    CHECKSUM_DESCRIPTION,
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
from ..core.shard_files import cache_bytes
from ..imaging.result import DecodedImage, DecodeFailure
from .plan import Action, Plan
from .regroup import Layout, Rows, regroup
from .report import BuildJob, ProgressCallback
from .scan import SourceFile
from .workers import decode_all

COMPRESSED_CHUNK_IMAGES = 8
# Pixels are written in slabs of SLAB_BYTES (32 default 256-px images; whole chunks when compressed): what is
# left when the workers are done is written after the last decode, while both cores wait (with 16 MB slabs,
# ~0.08 s at the end of a 2,976-file build in three splits). The other columns are flushed every FLUSH_ROWS
# images: each flush writes ~25 datasets, and h5py costs ~0.1-0.4 ms a call whatever its size (at 64 images
# a flush that was a quarter of the build process's CPU, benchmarks/hotpath.py ``main process``).
SLAB_BYTES = 2 << 20
FLUSH_ROWS = 1024
COPY_BLOCK_BYTES = 32 << 20  # images copied from an old cache per read/write, at most


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
        "view_position": storable_path(info.get("view_position", "")),
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
        self._output = AtomicFile(self.out)
        self.tmp_path = self._output.tmp
        self._splits: dict[str, _SplitState] = {}
        self._hist: dict[str, np.ndarray] = {}
        pixel_bytes = self.dtype.itemsize * image_shape[0] * image_shape[1]
        slab_rows = max(1, min(FLUSH_ROWS, SLAB_BYTES // max(1, pixel_bytes)))
        if compression != "none":  # whole chunks: a part of one is read back, decompressed and compressed again
            slab_rows = -(-slab_rows // COMPRESSED_CHUNK_IMAGES) * COMPRESSED_CHUNK_IMAGES
        self._slab_rows = slab_rows
        try:
            self._file = h5py.File(self.tmp_path, "w", libver=("v110", "latest"))
        except BaseException:
            self._output.abort()
            raise
        try:
            root = self._file.attrs
            root["format"] = FORMAT_NAME
            root["format_version"] = FORMAT_VERSION
            root["label_names"] = np.array(label_names, dtype=STR)
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
    ) -> None:
        """Write a block of already-decoded rows (copied from an older cache) after those queued so far.

        ``meta`` holds every META_COLUMNS column for the block; checksums and descriptors are computed
        from the pixels when not given.
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
        if descriptors is None:
            descriptors = np.stack([pixel_descriptor(image) for image in pixels])
        group["descriptors"][start:stop] = descriptors
        _add_hist(self._hist[split], pixels, labels)
        state.written = stop

    def label_rows(self, sources: list[SourceFile]) -> np.ndarray:
        """The ``labels`` rows of some files: label indices, or multi-hot rows for a multi-label cache."""
        if not self.multi_label:
            return np.array([source.label for source in sources], dtype=np.int16)
        rows = np.zeros((len(sources), len(self.label_names)), dtype=np.uint8)
        for row, source in zip(rows, sources, strict=True):
            row[list(source.labels)] = 1
        return rows

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
            count = labels.sum(axis=0, dtype=np.int64)
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
        )

    def commit(self, skipped: Sequence[Skipped] = (), layout: Layout | None = None) -> Path:
        """Finish the file (summaries, the ``/skipped`` list, exact sizes), make it durable, rename it to OUT.

        With a ``layout`` the file is rewritten with just its rows, in its splits (near-duplicates).
        """
        for split in self._splits:
            self._finish_split(split)
        write_skipped(self._file, list(skipped))
        needs_compaction = any(s.written < s.capacity for s in self._splits.values())
        self._file.close()
        if layout is not None:
            self._rearrange(layout)
        elif needs_compaction:
            self._compact()
        return self._output.commit()

    def _rearrange(self, layout: Layout) -> None:
        """Copy into a new file whose splits hold the rows ``layout`` lists, in its order, with their
        statistics counted again: images dropped as near-duplicates, or moved to another split."""
        out_path = self._output.sibling("compact.tmp")
        block = max(1, COPY_BLOCK_BYTES // max(1, self.dtype.itemsize * self.image_shape[0] * self.image_shape[1]))
        try:
            with h5py.File(self.tmp_path, "r") as src, h5py.File(out_path, "w", libver=("v110", "latest")) as dst:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    if name not in self._splits:
                        src.copy(src[name], dst, name=name)
                for split, rows in layout.rows.items():
                    _copy_selected(
                        src, dst.create_group(split), split, rows, layout.folds, len(self.label_names), block
                    )
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise
        self._output.replace_inner("compact.tmp")

    def _compact(self) -> None:
        """Copy into a new file whose datasets hold exactly the written rows (files were skipped).

        Contiguous datasets cannot shrink in place; this copy happens only when some file was
        skipped, and it moves blocks of images so memory stays bounded.
        """
        written = {name: state.written for name, state in self._splits.items()}
        compact_path = self._output.sibling("compact.tmp")
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
        self._output.replace_inner("compact.tmp")

    def abort(self) -> None:
        """Close and delete the temporary file; OUT is left as it was.

        Errors while closing (a full disk cannot take the final flush) are ignored: the file goes anyway.
        """
        try:
            self._file.close()
        except Exception:
            pass
        finally:
            self._output.abort()

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


def _add_hist(hist: np.ndarray, pixels: np.ndarray, labels: np.ndarray) -> None:
    """Add a block of images to the per-label histograms (multi-hot: once for each label an image has)."""
    if labels.ndim == 2:
        for label in np.flatnonzero(labels.any(axis=0)):
            hist[int(label)] += pixel_hist(pixels[labels[:, label] == 1])
    else:
        for label in np.unique(labels):
            hist[int(label)] += pixel_hist(pixels[labels == label])


def _copy_selected(
    src: h5py.File,
    dst: h5py.Group,
    split: str,
    rows: list[tuple[str, int]],
    folds: dict[tuple[str, int], int],
    n_labels: int,
    block: int,
) -> None:
    """Fill split group ``dst`` with the ``rows`` (written split, row) of ``src``, in order; new ``folds``
    where given; ``stats`` counted from the copied rows."""
    template = src[split]
    for key, value in template.attrs.items():
        dst.attrs[key] = value
    datasets: dict[str, h5py.Dataset] = {}
    for name, item in [*template.items(), *(("meta/" + k, v) for k, v in template["meta"].items())]:
        if isinstance(item, h5py.Group):
            continue
        kwargs: dict[str, Any] = {}
        if item.chunks is not None and item.compression is not None and rows:
            kwargs = {"chunks": (min(item.chunks[0], len(rows)), *item.chunks[1:]), "compression": item.compression}
        out = dst.create_dataset(name, shape=(len(rows), *item.shape[1:]), dtype=item.dtype, **kwargs)
        for key, value in item.attrs.items():
            out.attrs[key] = value
        datasets[name] = out
    hist = np.zeros((n_labels, 256), dtype=np.int64)
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        for name, out in datasets.items():
            values = _gather(src, name, chunk)
            if name == "meta/fold" and folds:
                values = np.array([folds.get(r, v) for r, v in zip(chunk, values.tolist(), strict=True)], out.dtype)
            out[start : start + len(chunk)] = values
        _add_hist(hist, _gather(src, "images", chunk), _gather(src, "labels", chunk))
    stats = dst.create_group("stats")
    stats.create_dataset("hist", data=hist)
    for key, value in template["stats"]["hist"].attrs.items():
        stats["hist"].attrs[key] = value
    labels = datasets["labels"][:]
    count = labels.sum(axis=0, dtype=np.int64) if labels.ndim == 2 else np.bincount(labels, minlength=n_labels)
    stats.create_dataset("count", data=count)


def _gather(src: h5py.File, name: str, rows: list[tuple[str, int]]) -> np.ndarray:
    """Dataset ``name`` of each (split, row), in the order given; rows of one split come in increasing order."""
    parts: list[np.ndarray] = []
    order: list[np.ndarray] = []
    position = np.arange(len(rows))
    splits = np.array([split for split, _ in rows], dtype=object)
    indices = np.array([row for _, row in rows], dtype=np.int64)
    for split in dict.fromkeys(splits.tolist()):
        mask = splits == split
        sort = np.argsort(indices[mask], kind="stable")  # h5py reads rows in increasing order only
        parts.append(src[split][name][indices[mask][sort]])
        order.append(position[mask][sort])
    values = np.concatenate(parts)
    out = np.empty_like(values)
    out[np.concatenate(order)] = values
    return out


def write_skipped(file: h5py.File, rows: list[Skipped]) -> None:
    """The ``/skipped`` group: one string column per field of the skipped rows."""
    group = file.create_group("skipped")
    for index, name in enumerate(SKIPPED_COLUMNS):
        group.create_dataset(name, data=np.array([row[index] for row in rows], dtype=object), dtype=STR)


def write_plan(job: BuildJob, plan: Plan, old_path: Path | None) -> list[SourceFile]:
    """Stream every file of the plan into a new cache at ``job.out``, in scan order; returns the files kept.

    Reused files are copied from the old cache at ``old_path`` in contiguous runs; files the plan already
    decoded are not decoded again; the rest go to the worker pool. Files that cannot be taken are logged in
    ``job.skips`` (checked before the commit: a strict build writes nothing).
    """
    found, spec, progress = job.found, job.resize, job.progress
    capacities = {split: 0 for split in found.splits}
    for f in found.files:
        capacities[f.split] += 1
    kept: list[SourceFile] = []
    decoded = plan.decoded
    to_decode = [a.source for a in plan.actions if not a.reuse and a.source.path not in decoded]
    block_rows = max(1, COPY_BLOCK_BYTES // (spec.size * spec.size))
    old = _OldRows(old_path) if old_path is not None else None
    try:
        with CacheWriter(
            job.out,
            capacities=capacities,
            label_names=found.label_names,
            image_shape=(spec.size, spec.size),
            attrs=job.attrs,
            compression=job.compression,
            dtype=spec.dtype,
            multi_label=found.multi_label,
        ) as writer:
            results = decode_all(str(found.root), to_decode, spec, job.n_jobs, job.pool)
            run: list[Action] = []
            for action in plan.actions:
                if action.reuse:
                    if run and not _extends(run, action, block_rows):
                        kept += _copied(old, writer, run, progress)
                        run = []
                    run.append(action)
                    continue
                if run:
                    kept += _copied(old, writer, run, progress)
                    run = []
                source = action.source
                result = decoded[source.path] if source.path in decoded else next(results)
                if isinstance(result, DecodeFailure):
                    job.skips(Skipped(storable_path(source.path), source.split, result.reason))
                else:
                    writer.add(result, source)
                    kept.append(source)
                if progress is not None:
                    progress(1)
            if run:
                kept += _copied(old, writer, run, progress)
            job.skips.check()  # strict: the writer aborts, OUT is not written
            if old is not None:
                old.close()
            layout = None
            if job.drop_duplicates or job.group_near_duplicates or job.group_folds:
                written = {split: writer.written_rows(split) for split in capacities}
                layout = regroup(
                    written, drop=job.drop_duplicates, resplit=job.group_near_duplicates, folds=job.group_folds
                )
            if layout is not None:
                job.skips.extend(layout.dropped)  # after the strict check: dropping is what was asked for
                kept = _placed(kept, layout)
                job.report.dropped_duplicates, job.report.moved_duplicates = len(layout.dropped), layout.moved
            writer.commit(skipped=job.skips.entries, layout=layout)
    finally:
        if old is not None:
            old.close()
    return kept


def _placed(kept: list[SourceFile], layout: Layout) -> list[SourceFile]:
    """The files the final file holds, each with the split (and fold) the layout put it in."""
    dropped = {row.path for row in layout.dropped}
    split_of = {}
    for split, rows in layout.rows.items():
        for row in rows:
            split_of[row] = split
    out = []
    index = {split: 0 for split in layout.rows}
    for source in kept:  # written in this order, so the n-th file of a split is its row n
        row = (source.split, index[source.split])
        index[source.split] += 1
        if storable_path(source.path) in dropped:
            continue
        fold = layout.folds.get(row, source.fold)
        out.append(dataclasses.replace(source, split=split_of[row], fold=fold))
    return out


def _extends(run: list[Action], action: Action, block_rows: int) -> bool:
    """Whether ``action`` continues ``run`` as one contiguous slice of the same old split, into one split."""
    last = run[-1].old
    now = action.old
    assert last is not None and now is not None
    same_target = action.source.split == run[-1].source.split
    return len(run) < block_rows and same_target and now.split == last.split and now.index == last.index + 1


class _OldRows:
    """The old cache's file, read in runs of unchanged rows. Its text is read within what the whole cache
    stores (:func:`cache_bytes`), counted over every run: rows of a hostile file that all point at one
    large heap string are refused instead of copied again and again."""

    def __init__(self, path: Path) -> None:
        self.file = h5py.File(path, "r")
        self.budget = cache_bytes(path, self.file.attrs)

    def copy(self, writer: CacheWriter, run: list[Action]) -> None:
        """Copy one contiguous run of unchanged images (pixels, provenance, checksums) into ``writer``."""
        first = run[0].old
        assert first is not None
        start, stop = first.index, first.index + len(run)
        group = self.file[first.split]
        meta: dict[str, np.ndarray] = {}
        for name in writer.columns:
            column = group["meta"][name]
            if h5py.check_string_dtype(column.dtype) is not None:
                meta[name] = read_text(column, self.budget, start, stop)
                self.budget -= sum(len(text) for text in meta[name])
            else:
                meta[name] = column[start:stop]
        meta["mtime_ns"] = np.array([a.mtime_ns for a in run], dtype=np.int64)
        meta["fold"] = np.array([a.source.fold for a in run])  # the hash's fold: the regrouping runs again
        checksums = group["checksums"][start:stop] if "checksums" in group else None
        descriptors = group["descriptors"][start:stop] if "descriptors" in group else None
        labels = writer.label_rows([a.source for a in run])
        writer.add_rows(run[0].source.split, group["images"][start:stop], labels, meta, checksums, descriptors)

    def close(self) -> None:
        self.file.close()


def _copied(
    old: _OldRows | None, writer: CacheWriter, run: list[Action], progress: ProgressCallback | None
) -> list[SourceFile]:
    """Copy ``run`` from the old cache; returns its files."""
    assert old is not None
    old.copy(writer, run)
    if progress is not None:
        progress(len(run))
    return [a.source for a in run]

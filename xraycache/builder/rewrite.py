"""Rewriting a finished cache file into a new one that holds fewer rows, or the same rows elsewhere.

Contiguous datasets cannot shrink in place, and near-duplicates are known only after every image is
written. So when files were skipped (the splits were sized from the scan) the file is *compacted*: copied
with exactly its written rows; and when near-duplicates are dropped or moved to another split
(``regroup.py``), it is *rearranged*: copied with the rows the layout lists, in its order, statistics
counted again. Both copy blocks of at most COPY_BLOCK_BYTES of pixels, so memory stays bounded, into a
sibling of the temporary file that then takes its place; OUT itself is only ever renamed over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from ..core.atomic import AtomicFile
from ..core.pixels import add_label_hist
from .regroup import Layout

COPY_BLOCK_BYTES = 32 << 20  # pixels copied from one cache file to another per read/write, at most
NEW = "compact.tmp"  # the rewritten file, beside the one it replaces


def compact(output: AtomicFile, written: dict[str, int]) -> None:
    """Rewrite ``output``'s file so that each split's datasets hold exactly its ``written`` rows."""

    def fill(src: h5py.File, dst: h5py.File) -> None:
        for name in src:
            if name not in written:
                src.copy(src[name], dst, name=name)
                continue
            _copy_rows(src[name], dst.create_group(name), written[name])

    _rewrite(output, fill)


def rearrange(output: AtomicFile, layout: Layout, n_labels: int) -> None:
    """Rewrite ``output``'s file so that its splits hold the rows ``layout`` lists, in its order, with their
    statistics counted again: images dropped as near-duplicates, or moved to another split."""

    def fill(src: h5py.File, dst: h5py.File) -> None:
        images = src[next(iter(layout.rows))]["images"]
        block = max(1, COPY_BLOCK_BYTES // max(1, images.dtype.itemsize * images.shape[1] * images.shape[2]))
        for name in src:
            if name not in layout.rows:
                src.copy(src[name], dst, name=name)
        for split, rows in layout.rows.items():
            _copy_selected(src, dst.create_group(split), split, rows, layout.folds, n_labels, block)

    _rewrite(output, fill)


def _rewrite(output: AtomicFile, fill: Callable[[h5py.File, h5py.File], None]) -> None:
    """A new file beside ``output``'s, with its root attributes and what ``fill`` copies into it, that then
    takes its place (removed instead if anything fails)."""
    new_path = output.sibling(NEW)
    try:
        with h5py.File(output.tmp, "r") as src, h5py.File(new_path, "w", libver=("v110", "latest")) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            fill(src, dst)
    except BaseException:
        new_path.unlink(missing_ok=True)
        raise
    output.replace_inner(NEW)


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
        add_label_hist(hist, _gather(src, "images", chunk), _gather(src, "labels", chunk))
    stats = dst.create_group("stats")
    stats.create_dataset("hist", data=hist)
    for key, value in template["stats"]["hist"].attrs.items():
        stats["hist"].attrs[key] = value
    labels = datasets["labels"][:]
    count = (labels == 1).sum(axis=0, dtype=np.int64) if labels.ndim == 2 else np.bincount(labels, minlength=n_labels)
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

"""Per-image values computed from stored pixels: checksum, near-duplicate descriptor, histogram, moments.

The build's compiled kernel (``imaging/_kernel.c``) computes the histogram and descriptor of each image
in the workers; these functions are the definition it must match to the byte (``tests/test_kernel.py``),
and what the writer, ``verify`` and the rewrites use on pixels read back from a file.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from typing import Any

import numpy as np

from .schema import BLAKE2B_BEFORE, DESCRIPTOR_SIDE, FORMAT_VERSION, HIST_BINS


def pixel_checksum(pixels: np.ndarray, format_version: int = FORMAT_VERSION) -> bytes:
    """Checksum of one stored image (the ``checksums`` dataset), as hex bytes, as a file of
    ``format_version`` stores it: CRC-32, or blake2b-128 for files older than format 3.

    Either detects accidental damage (a flipped bit, a torn copy); neither is proof against someone who
    rewrites a file on purpose, which no checksum stored beside the data can be.
    """
    dtype = np.uint16 if pixels.dtype == np.uint16 else np.uint8
    data = np.ascontiguousarray(pixels, dtype=dtype).data
    if format_version < BLAKE2B_BEFORE:
        return hashlib.blake2b(data, digest_size=16).hexdigest().encode("ascii")
    return b"%08x" % zlib.crc32(data)


def pixel_descriptor(pixels: np.ndarray) -> np.ndarray:
    """(32, 32) uint8 area-average thumbnail of one stored image (``descriptors``): what the near-duplicate
    search compares. Integer arithmetic when the side is a multiple of 32 (every default size), so the
    same pixels give the same bytes on any machine."""
    side = DESCRIPTOR_SIDE
    height, width = pixels.shape
    if pixels.dtype == np.uint8 and height % side == 0 and width % side == 0:
        kh, kw = height // side, width // side
        rows = pixels.reshape(side, kh, width).sum(axis=1, dtype=np.uint32)
        sums = rows.reshape(side, side, kw).sum(axis=2, dtype=np.uint32)
        count = kh * kw
        return ((sums + count // 2) // count).astype(np.uint8)
    values = pixels.astype(np.float64) / (257.0 if pixels.dtype == np.uint16 else 1.0)
    thumb = _area_weights(height) @ values @ _area_weights(width).T
    return np.clip(np.rint(thumb), 0, 255).astype(np.uint8)


def pixel_descriptors(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32) descriptors of a block of (N, H, W) images at once: :func:`pixel_descriptor` of each,
    with the same operations along the same axes (the integer path is exact; where the float path could
    round a value otherwise, a caller comparing with stored descriptors checks a mismatch with
    :func:`pixel_descriptor` itself)."""
    side = DESCRIPTOR_SIDE
    n, height, width = images.shape
    if images.dtype == np.uint8 and height % side == 0 and width % side == 0:
        kh, kw = height // side, width // side
        rows = images.reshape(n, side, kh, width).sum(axis=2, dtype=np.uint32)
        sums = rows.reshape(n, side, side, kw).sum(axis=3, dtype=np.uint32)
        count = kh * kw
        return ((sums + count // 2) // count).astype(np.uint8)
    values = images.astype(np.float64) / (257.0 if images.dtype == np.uint16 else 1.0)
    thumb = _area_weights(height) @ values @ _area_weights(width).T
    return np.clip(np.rint(thumb), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def _area_weights(n: int) -> np.ndarray:
    """(32, n): the fraction of each of n pixels in each of 32 equal cells, normalised per cell."""
    edges = np.arange(DESCRIPTOR_SIDE + 1) * (n / DESCRIPTOR_SIDE)
    pixel = np.arange(n)
    cover = np.minimum(pixel[None, :] + 1, edges[1:, None]) - np.maximum(pixel[None, :], edges[:-1, None])
    return np.clip(cover, 0.0, None) / (edges[1:] - edges[:-1])[:, None]


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


def add_label_hist(hist: np.ndarray, pixels: np.ndarray, labels: np.ndarray) -> None:
    """Add a block of images to per-label histograms ``hist`` (labels, 256), in place: each image counts
    once for its label, or (multi-hot ``labels`` of shape (N, C)) once for each label it has."""
    if labels.ndim == 2:
        for label in np.flatnonzero(labels.any(axis=0)):
            hist[int(label)] += pixel_hist(pixels[labels[:, label] == 1])
    else:
        for label in np.unique(labels):
            hist[int(label)] += pixel_hist(pixels[labels == label])

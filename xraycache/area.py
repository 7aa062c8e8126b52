"""Exact area-average resizing of 8-bit images (what ``cv2.INTER_AREA`` does, in NumPy).

Pillow's BOX filter counts an input pixel wholly in or wholly out of an output pixel by where its
centre falls, so at non-integer ratios it aliases fine stripes (28 dB against the exact area
average on the test patterns). Here every input pixel is weighted by the fraction of it an output
pixel covers: the integral of the piecewise-constant image, taken from prefix sums, is exact.
"""

from __future__ import annotations

import functools

import numpy as np

# The first pass's averages are kept in fixed point (1/256 of a gray level) so that the second pass
# can use an integer prefix sum down the rows, which NumPy vectorises (a float one it does not).
FIXED_POINT = 256


@functools.lru_cache(maxsize=256)
def _plan(n_in: int, n_out: int, start: float, stop: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For averaging [start, stop) into n_out cells: each edge's whole pixels before it (``lower``),
    the covered fraction of the pixel it falls in (``frac``), that pixel's index, and cell widths."""
    edges = start + np.arange(n_out + 1, dtype=np.float64) * ((stop - start) / n_out)
    lower = np.floor(edges).astype(np.intp)
    frac = edges - lower
    lower = np.clip(lower, 0, n_in)
    frac[lower == n_in] = 0.0
    pixel = np.minimum(lower, n_in - 1)
    return lower, frac.astype(np.float32), pixel, np.diff(edges).astype(np.float32)


def _average(image: np.ndarray, n_out: int, start: float, stop: float, axis: int) -> np.ndarray:
    """Area-average an integer 2-D array along ``axis`` (0 or 1) into n_out cells; float32 result."""
    lower, frac, pixel, width = _plan(image.shape[axis], n_out, start, stop)
    prefix = np.cumsum(image, axis=axis, dtype=np.int32)
    # integral from 0 to each edge = sum of the whole pixels before it + the covered part of the next
    # (plain fancy indexing per axis: measured faster than np.take or a broadcast mask here)
    if axis == 1:
        before = prefix[:, np.maximum(lower - 1, 0)].astype(np.float32)
        before[:, lower == 0] = 0
        before += frac * image[:, pixel]
        return np.diff(before, axis=1) / width
    before = prefix[np.maximum(lower - 1, 0)].astype(np.float32)
    before[lower == 0] = 0
    before += frac[:, None] * image[pixel]
    return np.diff(before, axis=0) / width[:, None]


def area_resize(
    image: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Resize a 2-D uint8 array to ``size`` = (width, height) by exact area averaging.

    ``box`` = (left, top, right, bottom) in source pixels selects the region to resize (as in
    Pillow's ``resize(box=...)``). Meant for downscaling; upscaling falls back to nearest pixels.
    Exact up to the final rounding to uint8 (and 1/512 of a gray level in between).
    """
    width, height = size
    left, top, right, bottom = box if box is not None else (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
    columns = _average(image, width, left, right, axis=1)  # the full-size pass runs along contiguous rows
    fixed = np.rint(columns * FIXED_POINT).astype(np.int32)
    rows = _average(fixed, height, top, bottom, axis=0) / FIXED_POINT
    return np.clip(rows + 0.5, 0, 255).astype(np.uint8)

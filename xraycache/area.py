"""Exact area-average resizing (what ``cv2.INTER_AREA`` does), in NumPy.

Pillow's BOX filter counts an input pixel wholly in or wholly out of an output pixel by where its
centre falls, so at non-integer ratios it aliases fine stripes (28 dB against the exact area
average on the test patterns). Here every input pixel is weighted by the fraction of it an output
pixel covers. Each axis is a K-tap gather-and-accumulate: output cell i sums input rows
``first[i] + k`` (k < K, K = ceil(ratio) + 1) with exact coverage weights, so the work is K
vectorised multiply-adds over the output rows, not a pass per input pixel.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=256)
def _taps(n_in: int, n_out: int, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """Input indices (K, n_out) and coverage weights (K, n_out) averaging [start, stop) into n_out cells."""
    edges = start + np.arange(n_out + 1, dtype=np.float64) * ((stop - start) / n_out)
    first = np.floor(edges[:-1]).astype(np.intp)
    k = max(1, int(np.max(np.ceil(edges[1:]) - first)))
    index = first[None, :] + np.arange(k)[:, None]
    cover = np.minimum(index + 1, edges[None, 1:]) - np.maximum(index, edges[None, :-1])
    weights = np.clip(cover, 0.0, None) / (edges[1:] - edges[:-1])[None, :]
    return np.clip(index, 0, n_in - 1), weights


def _average_rows(image: np.ndarray, n_out: int, start: float, stop: float, dtype: type[np.floating]) -> np.ndarray:
    """Area-average along axis 0: (H, W) -> (n_out, W), accumulated in ``dtype``."""
    index, weights = _taps(image.shape[0], n_out, start, stop)
    weights = weights.astype(dtype)
    out = weights[0][:, None] * image[index[0]]
    for k in range(1, len(index)):
        out += weights[k][:, None] * image[index[k]]
    return out


def area_average(
    image: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    dtype: type[np.floating] = np.float32,
) -> np.ndarray:
    """Exact area average of a 2-D array to ``size`` = (width, height), unrounded, in ``dtype``.

    ``box`` = (left, top, right, bottom) in source pixels selects the region (as Pillow's
    ``resize(box=...)``). Meant for downscaling: an upscaled axis degenerates to nearest pixels.
    """
    width, height = size
    left, top, right, bottom = box if box is not None else (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
    rows = _average_rows(image, height, top, bottom, dtype)  # (height, W)
    columns = _average_rows(np.ascontiguousarray(rows.T), width, left, right, dtype)  # (width, height)
    return np.ascontiguousarray(columns.T)


def area_resize(
    image: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Resize a 2-D uint8 array by exact area averaging, rounded to uint8 (see :func:`area_average`)."""
    return np.clip(area_average(image, size, box) + 0.5, 0, 255).astype(np.uint8)

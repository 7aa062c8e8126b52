"""The high-bit-depth policy: how sources deeper than 8 bits become stored pixels (uint8 or uint16).

Chest X-rays come as 8-bit JPEG/PNG (already windowed by whoever exported them: never re-windowed
here), 16-bit PNG (PadChest) and DICOM with 10-16 stored bits. A deep source is mapped to [0, 1] at
full resolution, then low-pass resized, then quantised to the output dtype:

- ``auto``: the DICOM file's own VOI (VOI LUT sequence, else window centre/width) where it has one,
  else ``percentile``;
- ``dicom``: the DICOM file's own VOI; a DICOM without one is skipped with that reason (a PNG cannot
  carry one and gets ``percentile``);
- ``minmax``: the image's full value range;
- ``percentile``: the 0.5th-99.5th percentile range, robust to a few dead or saturated pixels.

``dtype="uint16"`` keeps the depth (0-65535); 8-bit sources are then scaled by 257 (exact, 255 -> 65535).
Stored uint16 images have a 256-bin histogram of width 256 (``value >> 8``), see ``pixel_hist``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from .area import area_average

if TYPE_CHECKING:
    from .decode import ResizeSpec

Window = Literal["auto", "dicom", "minmax", "percentile"]
OutDtype = Literal["uint8", "uint16"]
WINDOWS = ("auto", "dicom", "minmax", "percentile")
DTYPES = ("uint8", "uint16")
PERCENTILES = (0.5, 99.5)
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})
HIST_BINS = 256


def out_max(dtype: str) -> int:
    """Largest stored value of an output dtype (255 or 65535)."""
    return 65535 if dtype == "uint16" else 255


def hist_bin_width(dtype: str | np.dtype) -> int:
    """Width of one of the 256 histogram bins: 1 for uint8 images, 256 for uint16 (bins of ``value >> 8``)."""
    return 256 if np.dtype(dtype) == np.uint16 else 1


def pixel_hist(pixels: np.ndarray) -> np.ndarray:
    """(256,) int64 histogram of stored pixels; uint16 pixels are binned by their high byte."""
    values = pixels.ravel()
    if values.dtype == np.uint16:
        values = values >> 8
    return np.bincount(values, minlength=HIST_BINS).astype(np.int64)


def pixel_moments(pixels: np.ndarray) -> tuple[int, int, float, float]:
    """Exact (min, max, mean, std) of one image, straight from its pixels."""
    if pixels.size == 0:
        return 0, 0, 0.0, 0.0
    values = pixels.astype(np.float64)
    return int(pixels.min()), int(pixels.max()), float(values.mean()), float(values.std())


def robust_range(values: np.ndarray, how: str) -> tuple[float, float]:
    """(low, high) of the ``minmax`` or ``percentile`` window over an image's values."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return 0.0, 0.0
    if how == "minmax":
        return float(finite.min()), float(finite.max())
    lo, hi = np.percentile(finite, PERCENTILES)
    return float(lo), float(hi)


def linear_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to [0, 1], clipped (a flat image maps to 0)."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values.astype(np.float64) - low) / (high - low), 0.0, 1.0)


def resize_unit(unit: np.ndarray, spec: ResizeSpec) -> np.ndarray:
    """Resize a [0, 1] float image to ``spec`` (same fits and filters as 8-bit images) and quantise to ``spec.dtype``."""
    from .decode import PILLOW_FILTERS, fit_box

    height, width = unit.shape
    (out_w, out_h), box = fit_box(width, height, spec)
    upscaling = out_w > box[2] - box[0] or out_h > box[3] - box[1]
    if spec.filter == "area" and not upscaling:
        resized = area_average(unit, (out_w, out_h), box, dtype=np.float64)  # no precision loss at 16 bits
    else:
        resample = Image.Resampling.BILINEAR if spec.filter == "area" else PILLOW_FILTERS[spec.filter]
        image = Image.fromarray(unit.astype(np.float32), mode="F")
        resized = np.asarray(image.resize((out_w, out_h), resample, box=box), dtype=np.float64)
    top = out_max(spec.dtype)
    dtype = np.uint16 if spec.dtype == "uint16" else np.uint8
    pixels = np.clip(resized * top + 0.5, 0, top).astype(dtype)
    if spec.fit != "pad":
        return pixels
    canvas = np.zeros((spec.size, spec.size), dtype=dtype)
    y0, x0 = (spec.size - out_h) // 2, (spec.size - out_w) // 2
    canvas[y0 : y0 + out_h, x0 : x0 + out_w] = pixels
    return canvas


def widen(pixels: np.ndarray, dtype: str) -> np.ndarray:
    """An 8-bit result in the output dtype: unchanged for uint8, x257 for uint16 (0 -> 0, 255 -> 65535)."""
    if dtype == "uint16" and pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * np.uint16(257)
    return pixels


def render_pil_high_bit(image: Image.Image, spec: ResizeSpec) -> tuple[np.ndarray, str]:
    """A >8-bit Pillow image (16-bit PNG) -> stored pixels, and the window applied (for the ``window`` column)."""
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
    else:
        values = np.asarray(image)
        if values.ndim != 2:
            values = np.asarray(image.convert("I"))
    how = "minmax" if spec.window == "minmax" else "percentile"  # auto/dicom: a PNG carries no VOI
    low, high = robust_range(values, how)
    return resize_unit(linear_window(values, low, high), spec), f"{how} {low:g}-{high:g}"

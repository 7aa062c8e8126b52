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
Stored uint16 images have a 256-bin histogram of width 256 (``value >> 8``), see ``core.pixels.pixel_hist``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..core.options import ResizeOptions
from .resize import resize

PERCENTILES = (0.5, 99.5)
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})


def robust_range(values: np.ndarray, how: str) -> tuple[float, float]:
    """(low, high) of the ``minmax`` or ``percentile`` window over an image's values (copied only where
    some are not finite: a full-size float64 copy is 8 bytes a pixel)."""
    finite = values
    if values.dtype.kind == "f":
        mask = np.isfinite(values)
        finite = values if mask.all() else values[mask]
        del mask
    if finite.size == 0:
        return 0.0, 0.0
    if how == "minmax":
        return float(finite.min()), float(finite.max())
    lo, hi = np.percentile(finite, PERCENTILES)
    return float(lo), float(hi)


def linear_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to [0, 1], clipped (a flat image maps to 0): one new float64 array, the
    arithmetic done in place in it (each temporary of a full-size image is 8 bytes a pixel)."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    unit = values.astype(np.float64)  # a copy even when ``values`` is float64: the caller keeps its values
    unit -= low
    unit /= high - low
    return np.clip(unit, 0.0, 1.0, out=unit)


def render_pil_high_bit(image: Image.Image, spec: ResizeOptions) -> tuple[np.ndarray, str]:
    """A >8-bit Pillow image (16-bit PNG) -> stored pixels, and the window applied (for the ``window`` column)."""
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
    else:
        values = np.asarray(image)
        if values.ndim != 2:
            values = np.asarray(image.convert("I"))
    how = "minmax" if spec.window == "minmax" else "percentile"  # auto/dicom: a PNG carries no VOI
    low, high = robust_range(values, how)
    return resize(linear_window(values, low, high), spec), f"{how} {low:g}-{high:g}"

"""One resize for every image: fit (stretch, pad, crop), low-pass filter, quantise, whatever the dtype.

The default filter, ``area``, is an exact area average (what ``cv2.INTER_AREA`` does), in NumPy.
Pillow's BOX filter counts an input pixel wholly in or wholly out of an output pixel by where its
centre falls, so at non-integer ratios it aliases fine stripes (28 dB against the exact area average on
the test patterns). Here every input pixel is weighted by the fraction of it an output pixel covers.
Each axis is a K-tap gather-and-accumulate: output cell i sums input rows ``first[i] + k`` (k < K,
K = ceil(ratio) + 1) with exact coverage weights, so the work is K vectorised multiply-adds over the
output rows, not a pass per input pixel. The other filters are Pillow's.

8-bit images are averaged in fixed point (``RESIZE_ARITHMETIC``): each cell's weights are integers
summing to ``1 << WEIGHT_BITS``, the vertical pass keeps ``FRACTION_BITS`` fractional bits, the
horizontal pass rounds to uint8. Integer sums do not depend on the order of the adds, so the compiled
kernel (``_kernel.c``, see ``kernel.py``) and the NumPy code here give the same bytes on every image, and
an incremental or distributed build stays identical whichever runs. Deep sources arrive as [0, 1] floats
(see ``window.py``), are averaged in float64 and quantised to the output dtype.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from PIL import Image

from ..core.options import RESIZE_ARITHMETIC, FilterName, OutDtype, ResizeOptions
from ..core.pixels import pixel_descriptor, pixel_hist
from ..core.schema import DESCRIPTOR_SIDE, HIST_BINS
from . import kernel
from .stack import installed_imaging_backend

WEIGHT_BITS = 14  # of each coverage weight: a cell's weights sum to 1 << 14
FRACTION_BITS = 7  # kept after the vertical pass (int16 intermediate: 255 << 7 fits)
assert f"fixed-point w{WEIGHT_BITS} f{FRACTION_BITS}" == RESIZE_ARITHMETIC  # what the cache records

PILLOW_FILTERS: dict[str, Image.Resampling] = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
# Pillow-SIMD vectorises resampling only for 4-byte pixels: there an L image resizes faster as RGB, three
# equal channels of which the first is kept (``python -m benchmarks.run --sections build`` times each filter
# on each installed PIL).
RESIZE_IN_RGB = installed_imaging_backend() == "Pillow-SIMD"

Box = tuple[float, float, float, float]


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
    image: np.ndarray, size: tuple[int, int], box: Box | None = None, dtype: type[np.floating] = np.float32
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


@functools.lru_cache(maxsize=256)
def _fixed_taps(n_in: int, n_out: int, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_taps` in fixed point: int32 indices and int32 weights, each cell's summing to 1 << WEIGHT_BITS.

    Each weight is the step between rounded running sums of the cell's weights, so a cell's weights are
    >= 0 and sum to exactly 1 << WEIGHT_BITS (a flat image stays exactly flat). Computed once per shape and
    shared by both kernels, which therefore use the very same integers.
    """
    index, weights = _taps(n_in, n_out, start, stop)
    running = np.cumsum(weights, axis=0)
    running /= running[-1]
    steps = np.floor(running * (1 << WEIGHT_BITS) + 0.5).astype(np.int32)
    fixed = np.diff(steps, axis=0, prepend=np.zeros((1, n_out), dtype=np.int32))
    return np.ascontiguousarray(index, dtype=np.int32), np.ascontiguousarray(fixed, dtype=np.int32)


def _area_numpy(
    image: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """The fixed-point area resize in NumPy: the same integer steps as ``area_u8`` in ``_kernel.c``."""
    row_index, row_weight = rows
    acc = row_weight[0][:, None] * image[row_index[0]].astype(np.int32)
    for k in range(1, len(row_index)):
        acc += row_weight[k][:, None] * image[row_index[k]]
    shift = WEIGHT_BITS - FRACTION_BITS
    middle = np.ascontiguousarray(((acc + (1 << (shift - 1))) >> shift).T)  # (W, out_h), < 1 << 15
    col_index, col_weight = cols
    total = col_weight[0][:, None] * middle[col_index[0]]
    for k in range(1, len(col_index)):
        total += col_weight[k][:, None] * middle[col_index[k]]
    shift = WEIGHT_BITS + FRACTION_BITS
    return np.ascontiguousarray(np.minimum((total + (1 << (shift - 1))) >> shift, 255).astype(np.uint8).T)


def area_resize(
    image: np.ndarray, size: tuple[int, int], box: Box | None = None, compiled: bool | None = None
) -> np.ndarray:
    """Resize a 2-D uint8 array by exact area averaging in fixed point, to uint8 (see :func:`area_average`).

    ``compiled``: None runs the kernel of this process (``kernel.kernel_name()``); False forces NumPy,
    True the compiled kernel (ImportError when it is not built). Both give the same bytes.
    """
    module = kernel.choose(compiled)
    if module is None:
        rows, cols = _fixed_tables(image.shape[0], image.shape[1], size, box)
        return _area_numpy(image, rows, cols)
    source = np.ascontiguousarray(image, dtype=np.uint8)
    return _area_compiled(module, source, source.shape[0], source.shape[1], size, box)


def _fixed_tables(
    height: int, width: int, size: tuple[int, int], box: Box | None, module: Any = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The row and column tables of one resize of a (height, width) source: computed by the compiled
    kernel when given one (the same integers, in microseconds), else by :func:`_fixed_taps`."""
    left, top, right, bottom = box if box is not None else (0.0, 0.0, float(width), float(height))
    if module is None or not (0 <= left < right <= width and 0 <= top < bottom <= height):
        # NumPy's tables also take boxes reaching outside the image (edge pixels repeat); no resize of
        # the build makes one, the compiled tables refuse them
        return _fixed_taps(height, size[1], top, bottom), _fixed_taps(width, size[0], left, right)
    return _compiled_taps(module, height, size[1], top, bottom), _compiled_taps(module, width, size[0], left, right)


def _compiled_taps(module: Any, n_in: int, n_out: int, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fixed_taps` by the compiled kernel (``fixed_taps`` in ``_kernel.c``)."""
    k, index, weights = module.fixed_taps(n_in, n_out, float(start), float(stop))
    shape = (k, n_out)
    return np.frombuffer(index, dtype=np.int32).reshape(shape), np.frombuffer(weights, dtype=np.int32).reshape(shape)


def _area_compiled(
    module: Any, source: object, height: int, width: int, size: tuple[int, int], box: Box | None
) -> np.ndarray:
    """The compiled area resize of ``source``: a contiguous uint8 buffer of (height, width), or the
    (schema, array) Arrow capsules of a Pillow L image, which the kernel reads in place."""
    rows, cols = _fixed_tables(height, width, size, box, module)
    out = np.empty((size[1], size[0]), dtype=np.uint8)
    module.area_u8(source, height, width, *rows, len(rows[0]), *cols, len(cols[0]), out, size[1], size[0])
    return out


def histogram(pixels: np.ndarray, compiled: bool | None = None) -> np.ndarray:
    """(256,) int64 histogram of stored pixels (``core.pixels.pixel_hist``), uint8 in the compiled kernel."""
    module = kernel.choose(compiled)
    if module is None or pixels.dtype != np.uint8:
        return pixel_hist(pixels)
    out = np.empty(HIST_BINS, dtype=np.int64)
    module.hist_u8(np.ascontiguousarray(pixels), out)
    return out


def descriptor(pixels: np.ndarray, compiled: bool | None = None) -> np.ndarray:
    """(32, 32) uint8 near-duplicate descriptor of stored pixels (``core.pixels.pixel_descriptor``); uint8
    images whose sides are multiples of 32 (every default size) in the compiled kernel, the same bytes."""
    module = kernel.choose(compiled)
    height, width = pixels.shape
    if module is None or pixels.dtype != np.uint8 or height % DESCRIPTOR_SIDE or width % DESCRIPTOR_SIDE:
        return pixel_descriptor(pixels)
    out = np.empty((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), dtype=np.uint8)
    module.descriptor_u8(np.ascontiguousarray(pixels), height, width, out)
    return out


def fit_box(width: int, height: int, spec: ResizeOptions) -> tuple[tuple[int, int], Box]:
    """Output size and source crop box for ``spec.fit`` (pad returns the letterboxed size)."""
    size = spec.size
    if spec.fit == "crop":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return (size, size), (left, top, left + side, top + side)
    if spec.fit == "pad":
        scale = size / max(width, height)
        out = (max(1, round(width * scale)), max(1, round(height * scale)))
        return out, (0.0, 0.0, float(width), float(height))
    return (size, size), (0.0, 0.0, float(width), float(height))


def out_max(dtype: str) -> int:
    """Largest stored value of an output dtype (255 or 65535)."""
    return 65535 if dtype == "uint16" else 255


def _pillow_resample(filter: FilterName) -> Image.Resampling:
    # "area" falls back to bilinear interpolation where it would upscale
    return Image.Resampling.BILINEAR if filter == "area" else PILLOW_FILTERS[filter]


def _resize_8bit(image: np.ndarray, size: tuple[int, int], box: Box, filter: FilterName, upscaling: bool) -> np.ndarray:
    if filter == "area" and not upscaling:
        return area_resize(image, size, box)
    gray = Image.fromarray(image)  # 2-D uint8: mode L
    if RESIZE_IN_RGB:
        resized = gray.convert("RGB").resize(size, _pillow_resample(filter), box=box).getchannel(0)
    else:
        resized = gray.resize(size, _pillow_resample(filter), box=box)
    return np.asarray(resized, dtype=np.uint8)


def _resize_unit(image: np.ndarray, size: tuple[int, int], box: Box, filter: FilterName, upscaling: bool) -> np.ndarray:
    if filter == "area" and not upscaling:
        return area_average(image, size, box, dtype=np.float64)  # no precision loss at 16 bits
    floats = Image.fromarray(image.astype(np.float32))  # mode F
    return np.asarray(floats.resize(size, _pillow_resample(filter), box=box), dtype=np.float64)


def quantise(unit: np.ndarray, dtype: OutDtype) -> np.ndarray:
    """[0, 1] floats -> stored integers of ``dtype``, rounded."""
    top = out_max(dtype)
    return np.clip(unit * top + 0.5, 0, top).astype(np.uint16 if dtype == "uint16" else np.uint8)


def widen(pixels: np.ndarray, dtype: OutDtype) -> np.ndarray:
    """An 8-bit result in the output dtype: unchanged for uint8, x257 for uint16 (0 -> 0, 255 -> 65535)."""
    if dtype == "uint16" and pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * np.uint16(257)
    return pixels


# At most this many values in one pass of a resize: a 1 x 60,000,000 px PNG (under the pixel limit) would
# otherwise need a (60,000,000 x 256) intermediate, more than 10 GB, before its long side is reduced.
MAX_INTERMEDIATE = 1 << 25


def _shrink_long_axes(image: np.ndarray, box: Box, size: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """Crop to ``box`` and block-average any side much longer than its output, by a whole factor, so no
    resize pass holds more than MAX_INTERMEDIATE values. Only extreme shapes (long thin strips) come here."""
    left, top = int(box[0]), int(box[1])
    right, bottom = max(math.ceil(box[2]), left + 1), max(math.ceil(box[3]), top + 1)
    image = image[top:bottom, left:right]
    for axis, out in ((0, size[1]), (1, size[0])):
        length = image.shape[axis]
        factor = length // (2 * out)
        if factor < 2:
            continue
        kept = (length // factor) * factor
        start = (length - kept) // 2
        strip = image[start : start + kept] if axis == 0 else image[:, start : start + kept]
        blocks = strip.reshape((kept // factor, factor, -1) if axis == 0 else (strip.shape[0], kept // factor, factor))
        averaged = blocks.mean(axis=1)
        image = np.clip(averaged + 0.5, 0, 255).astype(np.uint8) if image.dtype == np.uint8 else averaged
    return image, (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))


def resize(image: np.ndarray | Image.Image, spec: ResizeOptions) -> np.ndarray:
    """A 2-D image -> the stored ``(size, size)`` array of ``spec.dtype``.

    ``image`` is uint8 gray (an 8-bit source, never re-windowed), or floats in [0, 1] (a deep source
    after its window), or a Pillow ``L`` image: the compiled kernel then reads Pillow's memory in place
    (its Arrow export) where it can, else the image is copied into NumPy first. Fit, filter and padding
    (with 0) are the same for all.
    """
    if isinstance(image, Image.Image):
        width, height = image.size
    else:
        height, width = image.shape
    (out_w, out_h), box = fit_box(width, height, spec)
    extreme = max(out_h * width, height * out_w) > MAX_INTERMEDIATE
    if isinstance(image, Image.Image):
        in_place = None if extreme else _resize_in_place(image, (out_w, out_h), box, spec)
        if in_place is not None:
            return in_place
        image = np.asarray(image, dtype=np.uint8)
    if extreme:
        image, box = _shrink_long_axes(image, box, (out_w, out_h))
    upscaling = _upscales((out_w, out_h), box)
    if image.dtype == np.uint8:
        pixels = widen(_resize_8bit(image, (out_w, out_h), box, spec.filter, upscaling), spec.dtype)
    else:
        pixels = quantise(_resize_unit(image, (out_w, out_h), box, spec.filter, upscaling), spec.dtype)
    return _placed(pixels, spec)


def _resize_in_place(image: Image.Image, size: tuple[int, int], box: Box, spec: ResizeOptions) -> np.ndarray | None:
    """The area resize of a Pillow ``L`` image to ``size`` from ``box`` (:func:`fit_box`) by the compiled
    kernel, straight from Pillow's memory; None where that does not apply (no compiled kernel, another filter
    or mode, an upscale, an image over a foreign buffer, or one Pillow keeps in several blocks, which it
    does not export): :func:`resize` then copies it."""
    module = kernel.compiled
    # Only memory Pillow allocated itself: an image over a foreign buffer (fromarray, frombuffer, a memory
    # map; Pillow marks those read-only) has no allocation blocks, and Pillow 12.1's export crashes on it.
    # And only unpadded rows: with PILLOW_ALIGNMENT set, the export still says width x height values.
    if module is None or image.mode != "L" or spec.filter != "area" or image.readonly or _row_alignment() != 1:
        return None
    if _upscales(size, box):
        return None
    try:
        capsules = image.__arrow_c_array__()  # Pillow >= 11.2; ValueError for an image in several blocks
    except (AttributeError, ValueError):
        return None
    width, height = image.size
    return _placed(widen(_area_compiled(module, capsules, height, width, size, box), spec.dtype), spec)


def _upscales(size: tuple[int, int], box: Box) -> bool:
    """Whether a resize to ``size`` from ``box`` enlarges either axis (the area filter then interpolates)."""
    return size[0] > box[2] - box[0] or size[1] > box[3] - box[1]


def pillow_resamples(width: int, height: int, spec: ResizeOptions) -> bool:
    """Whether Pillow's resampling makes the stored pixels of a ``width`` x ``height`` source: with a Pillow
    filter always, with ``area`` only where the fit enlarges an axis (bilinear then). Pillow and Pillow-SIMD
    resample differently (by a gray level or two); the decode and the area kernel give the same bytes with
    either, so only these images depend on which of the two runs. A draft decode never enlarges an axis, so
    the source's own size decides."""
    return spec.filter != "area" or _upscales(*fit_box(width, height, spec))


def _row_alignment() -> int:
    """Pillow's row alignment for new images (``PILLOW_ALIGNMENT``; 1 unless set, every row then contiguous)."""
    get = getattr(Image.core, "get_alignment", None)
    return int(get()) if get is not None else 1


def _placed(pixels: np.ndarray, spec: ResizeOptions) -> np.ndarray:
    """Resized pixels as stored: unchanged, or centred on a zero canvas for ``fit="pad"``."""
    if spec.fit != "pad":
        return pixels
    out_h, out_w = pixels.shape
    canvas = np.zeros((spec.size, spec.size), dtype=pixels.dtype)
    top, left = (spec.size - out_h) // 2, (spec.size - out_w) // 2
    canvas[top : top + out_h, left : left + out_w] = pixels
    return canvas

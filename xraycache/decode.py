"""Decode one image file into a resized grayscale uint8 array, with its statistics.

This is the hot path of a build: it runs in every worker, once per file. JPEG entropy decoding
dominates, so the decoder is asked for a DCT-scaled grayscale image first (``Image.draft``), at
no less than twice the target size so the area filter that follows still sees real detail, and
only then is the image low-pass resized to its final size.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .area import area_resize
from .backend import installed_imaging_backend
from .dicom import decode_dicom, is_dicom
from .errors import DecodeError
from .window import HIGH_BIT_MODES, OutDtype, Window, pixel_hist, render_pil_high_bit, widen

Fit = Literal["stretch", "pad", "crop"]
FilterName = Literal["area", "box", "bilinear", "hamming", "lanczos"]
# "area" is exact area averaging (xraycache.area); the others are Pillow's resampling filters.
PILLOW_FILTERS: dict[str, Image.Resampling] = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
FILTERS = ("area", *PILLOW_FILTERS)
# Exact area averaging is the default: the only filter that keeps the worst synthetic stripe pattern
# above 40 dB against the area reference (Pillow's BOX: 28 dB), at ~1 ms an image more than BOX.
DEFAULT_FILTER: FilterName = "area"
# A chest radiograph is at most ~4,300 x 4,300 px (20 MP); 64 MP leaves room and still refuses
# decompression bombs before a single pixel is allocated.
DEFAULT_MAX_PIXELS = 64_000_000
# Draft (DCT-scaled) decode to at least this multiple of the target: measured on the real sample,
# 1x leaves the worst image at 37 dB against an exact area average, 2x at 46 dB (area filter).
DRAFT_OVERSAMPLE = 2
FORMATS = ("JPEG", "PNG")
# Pillow-SIMD vectorises resampling only for 4-byte pixels: there an L image resizes faster as RGB
# (measured: 0.46 vs 0.57 ms for box, 0.54 vs 1.0 ms for hamming, from the real sample's drafts).
RESIZE_IN_RGB = installed_imaging_backend() == "Pillow-SIMD"


@dataclass(frozen=True)
class ResizeSpec:
    """How every image of a build is shaped: settings recorded in the output file."""

    size: int = 256
    fit: Fit = "stretch"
    filter: FilterName = DEFAULT_FILTER
    max_pixels: int = DEFAULT_MAX_PIXELS
    window: Window = "auto"  # high-bit-depth policy (window.py); 8-bit sources are never re-windowed
    dtype: OutDtype = "uint8"  # stored pixel type


@dataclass
class DecodedImage:
    """A resized image with the provenance and statistics recorded beside it."""

    pixels: np.ndarray  # (size, size) uint8 or uint16 (ResizeSpec.dtype)
    width: int  # of the original, after EXIF orientation
    height: int
    mode: str  # Pillow mode of the original (L, RGB, I;16, ...)
    file_size: int
    file_hash: str  # sha256 of the file's bytes, hex
    mtime_ns: int
    hist: np.ndarray  # (256,) int64 histogram of the output pixels (uint16: bins of value >> 8)
    info: dict[str, Any] = field(default_factory=dict)  # provenance: format, window, DICOM fields (dicom.py)


def _to_gray(image: Image.Image) -> Image.Image:
    """Bring an 8-bit Pillow mode to ``L``: ITU-R 601 luma for colour, alpha dropped, palettes applied.

    Sources deeper than 8 bits never come here: they follow the high-bit policy of window.py.
    """
    mode = image.mode
    if mode == "L":
        return image
    if mode == "LA":
        return image.getchannel("L")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    return image.convert("L")


def _draft_request(width: int, height: int, spec: ResizeSpec) -> tuple[int, int]:
    """Smallest decode size that keeps every output pixel fed by >= DRAFT_OVERSAMPLE^2 inputs."""
    target = spec.size * DRAFT_OVERSAMPLE
    if spec.fit == "pad":
        longest = max(width, height)
        return (max(1, -(-target * width // longest)), max(1, -(-target * height // longest)))
    return (target, target)


def fit_box(width: int, height: int, spec: ResizeSpec) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
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


def resize_gray(image: Image.Image, spec: ResizeSpec) -> np.ndarray:
    """Low-pass resize an ``L`` image to ``spec`` (stretch, pad with 0, or centre crop)."""
    (out_w, out_h), box = fit_box(image.width, image.height, spec)
    upscaling = out_w > box[2] - box[0] or out_h > box[3] - box[1]
    if spec.filter == "area" and not upscaling:
        pixels = area_resize(np.asarray(image, dtype=np.uint8), (out_w, out_h), box)
    else:
        # Pillow filters; a source smaller than the output is interpolated bilinearly
        resample = Image.Resampling.BILINEAR if spec.filter == "area" else PILLOW_FILTERS[spec.filter]
        if RESIZE_IN_RGB:
            resized = image.convert("RGB").resize((out_w, out_h), resample, box=box).getchannel(0)
        else:
            resized = image.resize((out_w, out_h), resample, box=box)
        pixels = np.asarray(resized, dtype=np.uint8)
    if spec.fit != "pad":
        return pixels
    canvas = np.zeros((spec.size, spec.size), dtype=np.uint8)
    top, left = (spec.size - out_h) // 2, (spec.size - out_w) // 2
    canvas[top : top + out_h, left : left + out_w] = pixels
    return canvas


def decode_bytes(data: bytes, spec: ResizeSpec) -> tuple[np.ndarray, int, int, str]:
    """Decode image bytes (JPEG or PNG, by content) to ``(pixels, width, height, mode)``.

    Raises DecodeError with a short reason for anything that is not a readable image.
    """
    pixels, width, height, mode, _ = decode_image(data, spec)
    return pixels, width, height, mode


def decode_image(data: bytes, spec: ResizeSpec) -> tuple[np.ndarray, int, int, str, dict[str, Any]]:
    """``decode_bytes`` plus the provenance (format, bits, window applied) recorded beside the image."""
    if not data:
        raise DecodeError("empty file")
    image: Image.Image
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise DecodeError("not a JPEG or PNG image") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"unreadable header: {exc}") from None
    width, height = image.size
    mode = image.mode
    if width * height > spec.max_pixels:
        raise DecodeError(f"{width}x{height} px is over the pixel limit of {spec.max_pixels:,}")
    try:
        orientation = image.getexif().get(0x0112, 1)
        if image.format == "JPEG":
            image.draft("L", _draft_request(width, height, spec))
        image.load()
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        info: dict[str, Any] = {"format": image.format or "", "bits_stored": 8, "window": "none (8-bit)"}
        if mode in HIGH_BIT_MODES:  # the high-bit policy (window.py)
            pixels, info["window"] = render_pil_high_bit(image, spec)
            info["bits_stored"] = 32 if mode in ("I", "F") else 16
        else:
            pixels = widen(resize_gray(_to_gray(image), spec), spec.dtype)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated image data: {exc}") from None
    return pixels, width, height, mode, info


def decode_file(path: str | os.PathLike[str], spec: ResizeSpec) -> DecodedImage:
    """Read, hash, decode and resize one file. Raises DecodeError with the reason it was skipped."""
    try:
        stat = os.stat(path)
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    if is_dicom(path, data):
        pixels, width, height, mode, info = decode_dicom(data, spec)
    else:
        pixels, width, height, mode, info = decode_image(data, spec)
    return DecodedImage(
        pixels=pixels,
        width=width,
        height=height,
        mode=mode,
        file_size=len(data),
        file_hash=hashlib.sha256(data).hexdigest(),
        mtime_ns=stat.st_mtime_ns,
        hist=pixel_hist(pixels),
        info=info,
    )

"""What the imaging layer hands back: decoded pixels, a decoded file, or the reason a file failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class DecodedPixels:
    """A decoder's output: stored pixels (already resized) and what it knows of the original."""

    pixels: np.ndarray  # (size, size) uint8 or uint16 (ResizeOptions.dtype)
    width: int  # of the original, after EXIF orientation
    height: int
    mode: str  # Pillow mode of the original (L, RGB, I;16, ...)
    info: dict[str, Any] = field(default_factory=dict)  # provenance: format, window, bits_stored, DICOM fields


@dataclass
class DecodedImage:
    """A decoded file: its pixels with the provenance and statistics recorded beside them."""

    pixels: np.ndarray  # (size, size) uint8 or uint16 (ResizeOptions.dtype)
    width: int
    height: int
    mode: str
    file_size: int
    file_hash: str  # sha256 of the file's bytes, hex
    mtime_ns: int
    hist: np.ndarray  # (256,) int64 histogram of the output pixels (uint16: bins of value >> 8)
    descriptor: np.ndarray  # (32, 32) uint8 thumbnail of the output pixels, for the near-duplicate search
    checksum: bytes  # of the output pixels (core.pixels.pixel_checksum), what ``verify`` checks
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecodeFailure:
    """A file that could not be decoded, and the one-line reason recorded for it in ``/skipped``."""

    reason: str


DecodeResult = DecodedImage | DecodeFailure

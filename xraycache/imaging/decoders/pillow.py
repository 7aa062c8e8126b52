"""JPEG and PNG decoder plugin, through Pillow (or Pillow-SIMD): the hot path of a build.

JPEG entropy decoding dominates, so libjpeg-turbo is asked for a DCT-scaled grayscale image first
(``Image.draft``), at no less than twice the target size so the area filter that follows still sees
real detail, and only then is the image low-pass resized to its final size. Files are recognised by
content, not by name; this plugin is the fallback that takes whatever no other plugin claimed.
"""

from __future__ import annotations

import io
import os
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ...core.errors import DecodeError
from ...core.options import ResizeOptions
from ..resize import resize
from ..result import DecodedPixels
from ..window import HIGH_BIT_MODES, render_pil_high_bit

NAME = "JPEG/PNG (Pillow)"
REQUIRES = "Pillow"
MISSING = ""  # Pillow is a dependency: always available
FORMATS = ("JPEG", "PNG")
# Draft (DCT-scaled) decode to at least this multiple of the target: a 1x draft loses detail the area
# filter would keep; 2x keeps the worst image close to an exact area average of the full decode
# (``python -m benchmarks.hotpath --sections fidelity`` checks it on the real sample).
DRAFT_OVERSAMPLE = 2
# The most scans a JPEG may have: encoders write 1 (baseline) or about 10 (progressive; mozjpeg's
# optimised scripts a few more), and libjpeg-turbo's own guard against scan bombs (``-limitscans``) is 500.
# Each scan walks the whole image, so a small file repeating thousands of them held a build for minutes.
MAX_SCANS = 500
SOS = b"\xff\xda"  # start of scan


def available() -> bool:
    """Pillow is a dependency of the package: always True."""
    return True


def claims(path: str | os.PathLike[str], data: bytes) -> bool:
    """The fallback: every file not claimed by another plugin is tried as JPEG or PNG (by content)."""
    return True


def to_gray(image: Image.Image) -> Image.Image:
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


def draft_request(width: int, height: int, spec: ResizeOptions) -> tuple[int, int]:
    """Smallest decode size that keeps every output pixel fed by >= DRAFT_OVERSAMPLE^2 inputs."""
    target = spec.size * DRAFT_OVERSAMPLE
    if spec.fit == "pad":
        longest = max(width, height)
        return (max(1, -(-target * width // longest)), max(1, -(-target * height // longest)))
    return (target, target)


def jpeg_scans(data: bytes) -> int:
    """How many scans a JPEG's bytes announce: its start-of-scan markers (FF DA) from the first scan on,
    counted in one pass in C.

    The marker segments before the first scan (EXIF, ICC profiles, comments: they may hold that byte pair)
    are stepped over by their lengths. Entropy-coded data cannot hold the pair (a 0xFF there is followed by
    0x00 or a restart marker), so what is counted is the scans, plus any segment between them that holds
    the pair: never fewer than the decoder would run."""
    first = _first_scan(data)
    return 0 if first < 0 else data.count(SOS, first)


def _first_scan(data: bytes) -> int:
    """The offset of the first start-of-scan marker, walking the marker segments after SOI; -1 if none."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return -1
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == SOS[1]:
            return at
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return -1


def decode(data: bytes, spec: ResizeOptions) -> DecodedPixels:
    """Decode JPEG or PNG bytes (by content) to stored pixels; DecodeError with a short reason otherwise."""
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
    # Only a progressive JPEG can have many scans (a sequential one has one per component at most): the
    # others are not counted, which keeps the count off the path of most radiographs.
    if image.format == "JPEG" and image.info.get("progressive") and (scans := jpeg_scans(data)) > MAX_SCANS:
        raise DecodeError(
            f"a JPEG of {scans:,} scans (encoders write at most a few dozen; the limit is {MAX_SCANS}): "
            "refused, its decode would take minutes"
        )
    try:
        orientation = image.getexif().get(0x0112, 1)
        if image.format == "JPEG":
            image.draft("L", draft_request(width, height, spec))
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
            pixels = resize(to_gray(image), spec)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated image data: {exc}") from None
    return DecodedPixels(pixels, width, height, mode, info)

"""One file in, one stored array and its provenance out: read, hash, decode, resize, histogram.

This runs in every worker, once per file. ``decode_file`` raises DecodeError with the reason a file
cannot be taken; ``decode_or_failure`` never raises and returns that reason as a ``DecodeFailure``
(the form results travel in from the workers).
"""

from __future__ import annotations

import errno
import hashlib
import os

from ..core.errors import DecodeError
from ..core.files import read_regular
from ..core.options import ResizeOptions
from ..core.pixels import pixel_checksum
from .decoders import decode_bytes
from .resize import descriptor, histogram
from .result import DecodedImage, DecodeFailure, DecodeResult

BYTES_PER_PIXEL = 8  # the most any supported encoding stores per pixel (16-bit RGBA PNG, float64 DICOM)
HEADER_BYTES = 16 << 20


def max_file_bytes(spec: ResizeOptions) -> int:
    """The largest source file read: what ``max_pixels`` pixels could take in any supported encoding.

    512 MB at the default 64 MP; a file beyond it cannot hold an image the pixel limit lets through.
    """
    return BYTES_PER_PIXEL * spec.max_pixels + HEADER_BYTES


def decode_file(path: str | os.PathLike[str], spec: ResizeOptions) -> DecodedImage:
    """Read, hash, decode and resize one file. Raises DecodeError with the reason it was skipped."""
    try:
        data, stat = read_regular(path, max_file_bytes(spec))
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    decoded = decode_bytes(path, data, spec)
    return DecodedImage(
        pixels=decoded.pixels,
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        file_size=len(data),
        file_hash=hashlib.sha256(data).hexdigest(),
        mtime_ns=stat.st_mtime_ns,
        hist=histogram(decoded.pixels),
        descriptor=descriptor(decoded.pixels),
        checksum=pixel_checksum(decoded.pixels),
        info=decoded.info,
    )


def decode_or_failure(path: str, spec: ResizeOptions) -> DecodeResult:
    """:func:`decode_file`, with every failure (broken links and unexpected errors too) as a DecodeFailure."""
    try:
        return decode_file(path, spec)
    except DecodeError as exc:
        if os.path.islink(path) and not os.path.exists(path):
            try:
                os.stat(path)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    return DecodeFailure("symlink loop: the link never reaches a file")
            return DecodeFailure("broken symlink: its target does not exist")
        return DecodeFailure(str(exc))
    except Exception as exc:
        return DecodeFailure(f"unexpected {type(exc).__name__}: {exc}")

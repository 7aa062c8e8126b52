"""Decoder plugins: each module turns one file's bytes into stored pixels, with one shared signature.

A plugin module has ``NAME``, ``REQUIRES`` (the libraries it needs), ``available() -> bool`` (they are
installed), ``MISSING`` (the skip reason, with the install hint, when they are not), ``claims(path, data) -> bool`` and ``decode(data, spec) -> DecodedPixels``
(raises DecodeError with the reason). The first plugin that claims a file decodes it; a file claimed by an
unavailable plugin is skipped with its install hint. To read a new format, add a module here and put it in
``PLUGINS`` before the fallback.
"""

from __future__ import annotations

import os
from typing import Protocol

from ...core.errors import DecodeError
from ...core.options import ResizeOptions
from ..result import DecodedPixels
from . import dicom, pillow


class Decoder(Protocol):
    """The signature every plugin module shares."""

    NAME: str
    REQUIRES: str
    MISSING: str

    def available(self) -> bool: ...

    def claims(self, path: str | os.PathLike[str], data: bytes) -> bool: ...

    def decode(self, data: bytes, spec: ResizeOptions) -> DecodedPixels: ...


PLUGINS: tuple[Decoder, ...] = (dicom, pillow)  # in order of claim; pillow takes whatever is left


def decode_bytes(path: str | os.PathLike[str], data: bytes, spec: ResizeOptions) -> DecodedPixels:
    """Decode one file's bytes with the first plugin that claims them; DecodeError with the reason."""
    for plugin in PLUGINS:
        if plugin.claims(path, data):
            if not plugin.available():
                raise DecodeError(plugin.MISSING)
            return plugin.decode(data, spec)
    raise DecodeError("no decoder for this file")  # unreachable while pillow claims every file

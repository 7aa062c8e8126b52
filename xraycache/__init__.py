"""xraycache: turn a folder of chest X-rays into one HDF5 cache, once, fast and right."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DecodeError, InputError, NotACacheError, StrictError, XrayCacheError  # noqa: E402
from .pipeline import BuildReport, build  # noqa: E402

__all__ = [
    "BuildReport",
    "DecodeError",
    "InputError",
    "NotACacheError",
    "StrictError",
    "XrayCacheError",
    "__version__",
    "build",
]

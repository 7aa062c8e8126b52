"""xraycache: turn a folder of chest X-rays into one HDF5 cache, once, fast and right."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DecodeError, InputError, NotACacheError, StrictError, XrayCacheError
from .pipeline import BuildReport, build
from .reader import Cache, Split
from .reader import open as open  # xraycache.open(path); not in __all__: `import *` keeps builtins.open

__all__ = [
    "BuildReport",
    "Cache",
    "DecodeError",
    "InputError",
    "NotACacheError",
    "Split",
    "StrictError",
    "XrayCacheError",
    "__version__",
    "build",
]

"""xraycache: turn a folder of chest X-rays into one HDF5 cache, once, fast and right.

``xraycache.build(src, out, ...)`` makes a cache, ``xraycache.open(path)`` reads one. The top level loads
lazily: reading a cache (a DataLoader worker, say) never imports the build stack (joblib, PIL, decoders),
and the build stack is imported the first time ``build`` is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.errors import (
    CacheNotFoundError,
    CacheReplacedError,
    DecodeError,
    IndexOutOfRangeError,
    InputError,
    KeyNotFoundError,
    NotACacheError,
    OptionError,
    Skipped,
    StrictError,
    XrayCacheError,
)
from .core.options import BuildOptions
from .core.version import __version__

if TYPE_CHECKING:
    from .builder.api import build
    from .builder.report import BuildReport
    from .read.cache import Cache, Split
    from .read.cache import open as open

# name -> module that defines it, imported on first access
_LAZY = {
    "build": "xraycache.builder.api",
    "BuildReport": "xraycache.builder.report",
    "open": "xraycache.read.cache",
    "Cache": "xraycache.read.cache",
    "Split": "xraycache.read.cache",
}

__all__ = [
    "BuildOptions",
    "BuildReport",
    "Cache",
    "CacheNotFoundError",
    "CacheReplacedError",
    "DecodeError",
    "IndexOutOfRangeError",
    "InputError",
    "KeyNotFoundError",
    "NotACacheError",
    "OptionError",
    "Skipped",
    "Split",
    "StrictError",
    "XrayCacheError",
    "__version__",
    "build",
]  # not ``open``: ``from xraycache import *`` keeps the builtin


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xraycache' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

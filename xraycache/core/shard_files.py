"""Where a sharded cache's rows live: the shard files named by its root attributes, beside it.

A sharded cache (``build --shards K``) is a small file whose datasets are virtual concatenations of the
rows of K shard files in a folder next to it (``shard_dir``/``shard_files``). Readers, rebuilds and
``verify`` find those files, count their bytes and name a missing one through these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .reads import attr_value


def shard_count(attrs: Any) -> int:
    """How many shards a cache file (its root attributes) is joined from; 1 for a single file."""
    try:
        return int(attr_value(attrs.get("shards", 1)))
    except (TypeError, ValueError):
        return 1


def shard_paths(path: Path, attrs: Any) -> list[Path]:
    """The shard files a sharded cache at ``path`` reads from (empty for a single-file cache)."""
    if "shard_files" not in attrs:
        return []
    folder = path.parent / str(attr_value(attrs["shard_dir"]))
    names = attr_value(np.atleast_1d(attrs["shard_files"]))
    return [folder / str(name) for name in names]


def cache_bytes(path: Path, attrs: Any) -> int:
    """Bytes of the cache at ``path`` with its shard files: all a legitimate cache stores, text included
    (a sharded cache's own file is small; its rows live in the shards)."""
    return path.stat().st_size + sum(p.stat().st_size for p in shard_paths(path, attrs) if p.is_file())


def missing_shard_message(path: Path, attrs: Any) -> str | None:
    """A one-line error when a shard file of the cache at ``path`` is missing, else None."""
    missing = [p for p in shard_paths(path, attrs) if not p.is_file()]
    if not missing:
        return None
    folder = missing[0].parent.name
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return (
        f"{path}: shard {folder}/{missing[0].name} is missing{more}; HDF5 would read zeros in its place. "
        f"Keep {folder}/ beside {path.name} (move or copy them together), or rebuild"
    )

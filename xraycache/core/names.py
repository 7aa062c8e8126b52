"""What a cache's names may be (splits and labels): a build refuses the rest, a reader refuses such a file.

Kept apart from ``schema.py`` (which loads h5py and NumPy) because the option checks use it, and
``xraycache --help`` loads neither.
"""

from __future__ import annotations

MAX_LABELS = 10_000
MAX_SPLITS = 1_000
MAX_NAME_CHARS = 1_000  # a label or split name
RESERVED_SPLIT_NAMES = (".", "..", "skipped")  # not a split: ``/skipped`` is the group of skipped files


def split_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a split of a cache (a group at the file's root), or None when it can."""
    if not name:
        return "it is empty"
    if "/" in name:
        return "it holds a '/'"
    if name in RESERVED_SPLIT_NAMES:
        return "that name is reserved in a cache (its group of skipped files)"
    if "\0" in name:
        return "it holds a NUL character"
    if len(name) > MAX_NAME_CHARS:
        return f"it has {len(name):,} characters, more than a cache holds ({MAX_NAME_CHARS:,})"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not UTF-8"
    return None

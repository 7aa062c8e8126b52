"""``--split-list SPLIT=FILE``: files listing the images of an official split, one a line (NIH's
``train_val_list.txt`` and ``test_list.txt`` name 86,524 and 25,596 images by file name)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.errors import DecodeError, InputError
from ..core.files import read_regular
from .table_rows import normalize
from .tables import MAX_TABLE_BYTES


def _read(file: str | os.PathLike[str]) -> bytes:
    try:
        data, _ = read_regular(file, MAX_TABLE_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read split list {file}: {exc.strerror or exc}") from None
    except DecodeError as exc:
        raise InputError(f"cannot read split list {file}: {exc}") from None
    return data


def read_list(file: str | os.PathLike[str]) -> set[str]:
    """The paths or names a split list gives (normalised like a table's paths; blank lines skipped)."""
    data = _read(file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    entries = {normalize(line) for line in text.splitlines()}
    entries.discard("")
    if not entries:
        raise InputError(f"split list {Path(file)} names no image")
    return entries


def list_sha256(file: str | os.PathLike[str]) -> str:
    """The sha256 of a split list's bytes, hex."""
    return hashlib.sha256(_read(file)).hexdigest()

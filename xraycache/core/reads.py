"""Reading parts of a cache file without trusting it: damaged data as one-line errors, text within a budget.

Variable-length strings live in a heap that many rows may point at, so a small hostile file could make a
reader allocate far more than the file holds: text is read in blocks against a budget of what the whole
cache stores (``shard_files.cache_bytes``). Attributes come back as plain Python values.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from .errors import NotACacheError

# Text columns come back as fixed-width NumPy strings, every row as wide as the longest (4 bytes a
# character): a column of a million short names and one of a million characters would take 4 TB. Refused
# when that padding is both over PADDED_BYTES and over PADDING_FACTOR times the characters it holds.
PADDED_BYTES = 1 << 30
PADDING_FACTOR = 64


def read_data(dset: h5py.Dataset, selection: Any = ()) -> np.ndarray:
    """``dset[selection]``, with HDF5's errors on damaged data (a corrupt heap, a bad chunk) as one line."""
    try:
        return np.asarray(dset[selection])
    except (OSError, ValueError, RuntimeError) as exc:
        raise damaged(dset, exc) from None


def damaged(dset: h5py.Dataset, exc: BaseException) -> NotACacheError:
    """The error for data HDF5 could not read although the file's structure was sound."""
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return NotACacheError(
        f"{dset.file.filename}: {dset.name} cannot be read ({first}); the file is damaged: rebuild it"
    )


def read_text(
    dset: h5py.Dataset, budget: int, start: int = 0, stop: int | None = None, block: int = 4096
) -> np.ndarray:
    """Rows ``start:stop`` of a text column as a NumPy array of str, read in blocks, refused once they hold
    more than ``budget`` characters: variable-length strings live in a heap that many rows may point at,
    so a small hostile file could otherwise make a reader allocate far more than the file holds
    (``budget``: :func:`cache_bytes`, less what was read before)."""
    n = dset.shape[0] if dset.shape else 0
    n = n if stop is None else min(n, stop)
    parts: list[np.ndarray] = []
    total = longest = 0
    rows = 16  # blocks grow from 16 rows while what they could hold stays within the budget
    while start < n:
        try:
            text = h5py.check_string_dtype(dset.dtype) is not None
            values = dset.asstr()[start : min(n, start + rows)] if text else dset[start : min(n, start + rows)]
        except (OSError, ValueError, RuntimeError, MemoryError) as exc:
            raise damaged(dset, exc) from None
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.tolist()]
        total += sum(len(t) for t in texts)
        if total > budget:
            raise NotACacheError(f"{dset.file.filename}: {dset.name} holds more text than the file could store")
        parts.append(np.array(texts, dtype=str))
        start += len(texts)
        longest = max([longest, *(len(t) for t in texts)])
        rows = max(16, min(block, 2 * rows, (budget - total) // max(1, longest)))
    values = sum(len(part) for part in parts)
    padded = values * longest * 4
    if padded > PADDED_BYTES and padded > PADDING_FACTOR * 4 * total:
        raise NotACacheError(
            f"{dset.file.filename}: {dset.name} holds a value of {longest:,} characters among {values:,} of "
            f"{total / values:.1f} on average: as text of one width they would take {padded / 1e9:,.0f} GB"
        )
    return np.concatenate(parts) if parts else np.array([], dtype=str)


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as plain Python: str, int, float, or a tuple of those for arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return tuple(attr_value(v) for v in value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """Every attribute of a file, group or dataset, decoded by :func:`attr_value`."""
    return {key: attr_value(value) for key, value in obj.attrs.items()}

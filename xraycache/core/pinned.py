"""An open cache read only through the files its open checked: a sharded cache's rows from its shard handles.

A sharded cache joins its shards' rows with HDF5 virtual datasets, whose source files HDF5 opens *by path*
when a dataset is first read: after :func:`~xraycache.core.validate.open_cache` checked them, so a shard
swapped in the meantime (by whoever can write the shard folder) would be read unchecked, external storage
and all. So the open keeps each shard file open (opened without following links, its inode checked), and
every per-image dataset of a sharded cache is read as :class:`JoinedRows`: the concatenation of the
shards' own datasets through those handles, never through the virtual dataset. :class:`CacheFiles` and
:class:`RowsGroup` look like the read side of an h5py File and Group, so the readers index them as before.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import DecodeError, NotACacheError
from .files import KINDS


@dataclass(frozen=True)
class FileIdentity:
    """Which file an open handle reads: device, inode, size and modification time when it was opened."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, file: h5py.File) -> FileIdentity:
        info = os.fstat(int(file.id.get_vfd_handle()))
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def open_hdf5_pinned(path: Path) -> h5py.File:
    """The HDF5 file at ``path`` opened read-only, never through a symbolic link, and only if it is the very
    regular file checked here (OSError if it is missing or unreadable, DecodeError if it is a link or not a
    regular file, or was replaced while being opened).

    On Linux HDF5 opens the descriptor checked here (``/proc/self/fd/N``), so no second lookup of the path
    happens at all; elsewhere it opens the path and its inode must be the checked one.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if path.is_symlink():
            raise DecodeError("is a symbolic link, not a regular file") from None
        raise exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DecodeError(f"is {KINDS.get(stat.S_IFMT(info.st_mode), 'a special file')}, not a regular file")
        proc = f"/proc/self/fd/{fd}"
        file = h5py.File(proc if os.path.exists(proc) else path, "r")
        opened = os.fstat(int(file.id.get_vfd_handle()))
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            file.close()
            raise DecodeError("was replaced while it was being opened")
        return file
    finally:
        os.close(fd)


def _parts(shards: tuple[h5py.File, ...], joins: tuple[int, ...], name: str) -> tuple[JoinedPart, ...]:
    """The datasets at ``name`` of the shard files numbered ``joins``, in order, with the first joined row of
    each."""
    parts = []
    start = 0
    for index in joins:
        dset = shards[index][name]
        parts.append(JoinedPart(start, index, dset))
        start += dset.shape[0]
    return tuple(parts)


@dataclass(frozen=True)
class JoinedPart:
    """One shard's rows of a joined dataset: its first row in the join, the shard's index, its dataset."""

    start: int
    shard: int
    dataset: h5py.Dataset

    @property
    def stop(self) -> int:
        return self.start + int(self.dataset.shape[0])


class JoinedRows:
    """A per-image dataset of a sharded cache: the rows of the shards' own datasets, one after the other, read
    through the shard handles the open checked (what the cache's virtual dataset says, which the open checked
    too, without HDF5 opening anything by path). Indexed on its first axis as an h5py dataset is: ``()``, an
    int, a slice, an array of indices; further axes of a tuple key are applied in NumPy."""

    def __init__(self, virtual: h5py.Dataset, shards: tuple[h5py.File, ...], joins: tuple[int, ...]) -> None:
        self.name: str = virtual.name
        self.file = virtual.file  # the cache's own file: errors name it
        self.attrs = virtual.attrs
        self.dtype = virtual.dtype
        self.parts = _parts(shards, joins, self.name)
        rows = self.parts[-1].stop if self.parts else 0
        self.shape: tuple[int, ...] = (rows, *virtual.shape[1:])
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self.chunks = None
        self.compression = None
        self.is_virtual = False
        self._starts = np.array([part.start for part in self.parts], dtype=np.int64)

    def __len__(self) -> int:
        return self.shape[0]

    def asstr(self) -> _AsStr:
        """Text rows as str, as h5py's ``dataset.asstr()``."""
        return _AsStr(self)

    def read_direct(self, out: np.ndarray) -> None:
        out[...] = self[()]

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._read(key, text=False)

    def _read(self, key: Any, text: bool) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (Ellipsis, ())
        single = isinstance(key, (int, np.integer))
        if key is Ellipsis:
            key = slice(None)
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            rows = np.arange(start, stop, step, dtype=np.int64)
        else:
            rows = np.atleast_1d(np.asarray(key)).astype(np.int64)
            rows = np.where(rows < 0, rows + self.shape[0], rows)
            if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
                raise IndexError(f"index out of range for {self.name} of {self.shape[0]} rows")
        out = np.empty((rows.size, *self.shape[1:]), dtype=object if text else self.dtype)
        owner = np.searchsorted(self._starts, rows, side="right") - 1
        for which in np.unique(owner).tolist():
            part = self.parts[which]
            mask = owner == which
            local = rows[mask] - part.start
            source = part.dataset.asstr() if text else part.dataset
            if local.size and np.array_equal(local, np.arange(local[0], local[0] + local.size)):
                out[mask] = source[int(local[0]) : int(local[0]) + local.size]  # one run: one slice read
            else:
                unique, inverse = np.unique(local, return_inverse=True)
                out[mask] = source[unique][inverse]
        result = out[0] if single else out
        return result[rest] if rest else result


class _AsStr:
    """``joined.asstr()[...]``: text rows decoded to str."""

    def __init__(self, rows: JoinedRows) -> None:
        self._rows = rows

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._rows._read(key, text=True)


class RowsGroup:
    """A group of an open cache as a reader sees it: members by name or path, with a sharded cache's virtual
    datasets read as :class:`JoinedRows` and its subgroups wrapped alike. Each member is looked up once per
    open cache (readers ask for ``images`` at every batch)."""

    def __init__(
        self,
        group: h5py.Group,
        shards: tuple[h5py.File, ...],
        joined: Mapping[str, tuple[int, ...]],
        members: dict[str, Any],
    ) -> None:
        self.group = group
        self.shards = shards
        self.name: str = group.name
        self.attrs = group.attrs
        self._joined = joined  # virtual dataset -> the shards whose rows the open checked it joins
        self._members = members  # path -> wrapped member, shared by every group of one open cache

    def _path(self, name: str) -> str:
        return name if name.startswith("/") else f"{self.name.rstrip('/')}/{name}"

    def __getitem__(self, name: str) -> Any:
        path = self._path(name)
        found = self._members.get(path)
        if found is None:
            item = self.group[name]
            if isinstance(item, h5py.Group):
                found = RowsGroup(item, self.shards, self._joined, self._members)
            elif isinstance(item, h5py.Dataset) and item.is_virtual:
                if item.name not in self._joined:  # nothing the open did not check is read
                    raise NotACacheError(f"{self.group.file.filename}: {item.name} is a virtual dataset not checked")
                found = JoinedRows(item, self.shards, self._joined[item.name])
            else:
                found = item
            self._members[path] = found
        return found

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self._path(name) in self._members or name in self.group)

    def __iter__(self) -> Iterator[str]:
        return iter(self.group)

    def __len__(self) -> int:
        return len(self.group)

    def keys(self) -> list[str]:
        return list(self.group)

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self.group:
            yield name, self[name]


class CacheFiles(RowsGroup):
    """An open cache: its file and, for a sharded cache, its shard files (named ``shard_names``, relative to
    the cache's folder) and the virtual datasets joining them (``joined``), each opened once and checked by
    ``open_cache``; the root group of what the readers read. Closing it closes them all."""

    def __init__(
        self,
        file: h5py.File,
        shards: tuple[h5py.File, ...] = (),
        shard_names: tuple[str, ...] = (),
        joined: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__(file, shards, joined or {}, {})
        self.file = file
        self.filename: str = file.filename
        self.shard_names = shard_names
        self._as_opened = [FileIdentity.of(handle) for handle in (*shards, file)]  # the cache's file last: -1

    @property
    def id(self) -> Any:  # the cache file's h5py FileID: its descriptor, its validity
        return self.file.id

    def identities(self) -> tuple[FileIdentity, ...]:
        """Which shard files this cache reads (empty for a single-file cache), as they were when opened."""
        return tuple(self._as_opened[:-1])

    def check_unchanged(self, files: Iterator[int] | list[int] | None = None) -> None:
        """NotACacheError if a file of this cache (all, or the numbered ones: -1 the cache's, else a shard's)
        was truncated or written since it was opened. Called after a read: HDF5 reads zeros past the end of a
        truncated file, and a file rewritten in place (``cp new.h5 cache.h5``) would mix two builds."""
        numbers = range(-1, len(self.shards)) if files is None else files
        for number in numbers:
            handle = self.file if number < 0 else self.shards[number]
            if FileIdentity.of(handle) != self._as_opened[number]:
                which = "" if number < 0 else f" (shard {self.shard_names[number]})"
                raise NotACacheError(
                    f"{self.filename}{which} was truncated or written while being read; open it again, or rebuild it"
                )

    def close(self) -> None:
        for handle in (*self.shards, self.file):
            handle.close()

    def __enter__(self) -> CacheFiles:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

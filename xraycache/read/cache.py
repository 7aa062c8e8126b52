"""Read a cache back: ``xraycache.open(path)`` -> Cache -> ``cache["train"]`` -> Split of NumPy arrays.

Small objects with NumPy-like slicing, in the spirit of h5py. Uncompressed image arrays are stored
contiguously (see docs/format.md, "Why contiguous"), so they are read with positional reads (``os.preadv``) of the file at
the dataset's offset straight into NumPy arrays: whole-split loads and shuffled batches run at memory
speed, and a file truncated under a reader gives a clear error instead of the SIGBUS a memory map would.
Compressed (chunked) arrays are read through h5py in whole chunks. A sharded cache is read the same way from
its shard files, through the handles its open checked (``core/pinned.py``), never through its virtual datasets.
A Split pickles as (path, split name) and opens the file again, lazily, in the process that unpickles it, so
it is safe in multiprocess data-loader workers.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import warnings
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..analysis.leakage import LeakageReport, leakage, search_refused
from ..core.errors import (
    CacheReplacedError,
    IndexOutOfRangeError,
    InputError,
    KeyNotFoundError,
    NotACacheError,
    Skipped,
)
from ..core.limits import SEARCH_IMAGES, SEARCH_PAIRS
from ..core.options import setting_names
from ..core.pinned import CacheFiles, FileIdentity, JoinedPart, JoinedRows, RowsGroup
from ..core.reads import attr_value, damaged, read_attrs, read_data, read_text
from ..core.schema import SKIPPED_COLUMNS
from ..core.shard_files import cache_bytes
from ..core.validate import open_cache
from .arrays import UNSET, PixelFormat, Unset, label_dtype_for, mean_std_from_image_stats
from .label_policy import LabelPolicy, coded_without_policy
from .label_policy import label_policy as label_policy_of

BLOCK_BYTES = 64 * 2**20  # images read per sorted block in batches(): bounds memory to ~2 x this
ITER_BYTES = 4 * 2**20  # images read at a time by ``for image in split.images``


@dataclass(frozen=True)
class Opened:
    """Which file a reader opened: its build id (caches written since build ids, else "") and its inode, and
    for a sharded cache which shard files (device, inode, size, modification time)."""

    build_id: str
    device: int
    inode: int
    sharded: bool
    shards: tuple[FileIdentity, ...] = ()

    def same(self, other: Opened) -> bool:
        """Whether ``other`` is the same build (the same file, for caches older than build ids)."""
        if self.build_id and other.build_id:
            return self.build_id == other.build_id
        return (self.device, self.inode) == (other.device, other.inode)


class _Handle:
    """An h5py file opened on first use, and again after a fork or unpickling (never shared).

    While open, a handle reads the file it opened, whatever the path names since (HDF5 and the positional
    reads hold the file itself). Opened again (after a fork, unpickled in another process, a closed cache
    used again) it opens the path and refuses, with :class:`CacheReplacedError`, a file of another build
    than the one it first opened (``opened``): one line, never two builds mixed.

    A sharded cache's shard files are opened with it, once, by the validating open, and read only through
    those handles (``core/pinned.py``): a shard swapped after the open is never read. Opened again, it also
    refuses shard files other than the ones it first opened (their inode, size and modification time).

    ``raw_fd(shard)`` is a file descriptor of the very file h5py holds open (the cache's, or shard number
    ``shard``'s; found through h5py's own file descriptor, not by path), so direct reads keep seeing the
    file this handle opened even after a rebuild renamed a new file over the path. They are closed with the
    handle, or when the handle is collected (plain descriptors: no ResourceWarning for a cache a script did
    not close).
    """

    def __init__(self, path: Path, file: CacheFiles | None = None, opened: Opened | None = None) -> None:
        self.path = path
        self._file = file
        self._pid = os.getpid() if file is not None else -1
        self._raw_fds: dict[int, int] = {}
        self._raw_close: list[weakref.finalize] = []
        self.opened = opened if opened is not None or file is None else _opened(file)

    @property
    def file(self) -> CacheFiles:
        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            self._file = self._reopen()
            self._pid = os.getpid()
            self._raw_fds, self._raw_close = {}, []
        return self._file

    def _reopen(self) -> CacheFiles:
        """The cache at the path, checked to be the build this handle read before (if it read one)."""
        file = open_cache(self.path)
        now = _opened(file)
        if self.opened is None:
            self.opened = now
        elif not self.opened.same(now) or self.opened.shards != now.shards:
            created = attr_value(file.attrs.get("created", ""))
            file.close()
            how = f"by another build{f' of {created}' if created else ''}"
            if self.opened.same(now):
                how = "its shard files are other files"
            raise CacheReplacedError(
                f"{self.path} was replaced since it was opened ({how}); open it again to read the new one"
            )
        return file

    def raw_fd(self, shard: int = -1) -> int:
        """A descriptor of the cache file (``shard`` -1) or of its shard number ``shard``, as opened."""
        files = self.file
        if shard not in self._raw_fds:
            vfd = int((files.file if shard < 0 else files.shards[shard]).id.get_vfd_handle())
            proc = f"/proc/self/fd/{vfd}"  # a new open file description: its own offset, same inode
            fd = os.open(proc, os.O_RDONLY | os.O_CLOEXEC) if os.path.exists(proc) else os.dup(vfd)
            self._raw_fds[shard] = fd
            self._raw_close.append(weakref.finalize(self, _close_quietly, fd))
        return self._raw_fds[shard]

    @property
    def size(self) -> int:
        """Bytes of the cache with its shard files: the bound on how much text it can hold."""
        return cache_bytes(self.path, self.file.attrs)

    def read(self, dset: h5py.Dataset | JoinedRows) -> np.ndarray:
        """A whole dataset (text as str, within :attr:`size`) read through h5py, from the files as opened."""
        text = h5py.check_string_dtype(dset.dtype) is not None
        values = read_text(dset, self.size) if text else read_data(dset)
        self.file.check_unchanged()  # HDF5 reads zeros past the end of a file truncated since
        return values

    def close(self) -> None:
        if self._pid == os.getpid():
            for close in self._raw_close:
                close()
            if self._file is not None:
                self._file.close()
        self._file = None
        self._raw_fds, self._raw_close = {}, []


def _opened(files: CacheFiles) -> Opened:
    """The identity of an open cache and of its shard files."""
    info = os.fstat(int(files.id.get_vfd_handle()))
    build_id = attr_value(files.attrs.get("build_id", ""))
    return Opened(str(build_id), info.st_dev, info.st_ino, bool(files.shards), files.identities())


def _close_quietly(fd: int) -> None:
    """Close a descriptor that may already be gone (a handle collected at exit)."""
    with contextlib.suppress(OSError):
        os.close(fd)


class Cache(Mapping[str, "Split"]):
    """An open cache file: a read-only mapping of split name -> :class:`Split`, with its build settings and
    the files it skipped. Use as a context manager.

    ``cache["train"]``, ``"val" in cache``, ``list(cache)`` (the split names, in the build's order: train,
    val, test, then the rest), ``cache.items()`` and ``cache.get("val")`` behave as on a dict or an h5py
    group; a missing split raises :class:`~xraycache.KeyNotFoundError`, a ``KeyError``.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    splits : tuple of str
        The split names (the mapping's keys).
    label_names : tuple of str
        Class names, indexed by label value.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle = _Handle(self.path, open_cache(self.path))
        file = self._handle.file
        self.label_names: tuple[str, ...] = tuple(attr_value(file.attrs.get("label_names", ())))
        listed = tuple(attr_value(file.attrs.get("splits", ())))
        self.splits: tuple[str, ...] = tuple(s for s in listed if isinstance(file.get(s), RowsGroup))
        self._split_objects: dict[str, Split] = {}

    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        """Every root attribute as plain Python (read on first use: opening a cache need not read them)."""
        return read_attrs(self._handle.file.file)

    @property
    def settings(self) -> dict[str, Any]:
        """The build options recorded in the file (size, fit, filter, window, dtype, classes, resplit, ...)."""
        return {key: self.attrs[key] for key in setting_names() if key in self.attrs}

    @property
    def skipped(self) -> list[Skipped]:
        """Files the build did not take, with the reason for each (may be empty)."""
        group = self._handle.file.get("skipped")
        if group is None:
            return []
        columns = [self._handle.read(group[name]) if name in group else None for name in SKIPPED_COLUMNS]
        n = len(columns[0]) if columns[0] is not None else 0
        return [Skipped(*(str(c[i]) if c is not None else "" for c in columns)) for i in range(n)]

    def leakage(self, max_images: int | None = SEARCH_IMAGES) -> LeakageReport:
        """Patients in more than one split, identical files and near-duplicate images, from the stored meta
        columns and descriptors; the pixels are read only of the pairs the descriptors suggest. Near-duplicates
        are searched among at most ``max_images`` images (None: any number; the search grows with the square
        of the count), else not, and the report says why."""
        refused = search_refused(sum(len(self[name]) for name in self.splits), max_images)
        if refused:
            return leakage({name: self[name].meta for name in self.splits}, unavailable=refused)
        found = {name: self[name].descriptors for name in self.splits}
        descriptors = {name: d for name, d in found.items() if d is not None}
        if len(descriptors) == len(found):
            pixels = {name: self[name].images.__getitem__ for name in self.splits}
            meta = {name: self[name].meta for name in self.splits}
            return leakage(meta, descriptors, pixels=pixels, max_checked=SEARCH_PAIRS if max_images else None)
        version = self.attrs.get("format_version", 0)
        missing = ", ".join(name for name, d in found.items() if d is None)
        why = (
            f"built before near-duplicate descriptors (format {version}); "
            if isinstance(version, int) and version < 2
            else f"split(s) {missing} hold no descriptors; "
        ) + "rebuild it with --overwrite to search near-duplicates"
        return leakage({name: self[name].meta for name in self.splits}, unavailable=why)

    def locate(self, source_path: str) -> tuple[str, int]:
        """(split, index) of the image built from ``source_path`` (relative to the source folder, or ending it)."""
        wanted = source_path.replace(os.sep, "/").removeprefix("./")
        for name in self.splits:
            paths = self[name].meta["path"]
            hits = np.flatnonzero(paths == wanted)
            if hits.size == 0:
                hits = np.flatnonzero(np.char.endswith(paths, "/" + wanted)) if paths.size else hits
            if hits.size:
                return name, int(hits[0])
        raise InputError(f"no image from {source_path!r} in {self.path}; give a path as listed by `xraycache info`")

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            available = ", ".join(self.splits) or "none"
            raise KeyNotFoundError(f"{self.path} has no split {split!r}; available: {available}")
        if split not in self._split_objects:
            self._split_objects[split] = Split(self.path, split, _handle=self._handle)
        return self._split_objects[split]

    def __contains__(self, split: object) -> bool:
        return split in self.splits

    # a Cache is one open file: equal to itself only, and hashable, as an h5py File is
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    def close(self) -> None:
        """Close the file; Splits taken from this cache then reopen it themselves if used again."""
        self._handle.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}: {len(self[s])}" for s in self.splits)
        return f"<xraycache.Cache {self.path} ({sizes}) labels {list(self.label_names)}>"


def open(path: str | os.PathLike[str]) -> Cache:
    """Open a cache file for reading.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``xraycache build`` (or :func:`xraycache.build`).

    Returns
    -------
    Cache
        The open cache: a mapping of split name -> :class:`Split`; use it as a context manager.

    Raises
    ------
    CacheNotFoundError
        Nothing at ``path`` (also a ``FileNotFoundError``).
    NotACacheError
        The file is not an xraycache cache, or is damaged, or could make a reader misbehave.
    """
    return Cache(path)


def _check_indices(index: np.ndarray, n: int, what: str) -> np.ndarray:
    """Integer array with negatives wrapped; InputError naming the valid range if any is out of it."""
    if index.dtype == bool:
        if index.shape != (n,):
            raise InputError(f"boolean mask of length {index.size} for {what} of length {n}; give a mask of length {n}")
        return np.flatnonzero(index)
    if index.size and not np.issubdtype(index.dtype, np.integer):
        raise InputError(f"index array of {index.dtype} for {what}; give integers, a slice or a boolean mask")
    index = index.astype(np.int64, copy=False)
    if index.size and (index.min() < -n or index.max() >= n):
        bad = int(index[(index < -n) | (index >= n)][0])
        raise IndexOutOfRangeError(
            f"index {bad} is out of range for {what} of length {n}; use 0 to {n - 1} (or -{n} to -1)"
        )
    return np.where(index < 0, index + n, index)


class Images:
    """The images of one split, (N, H, W) uint8, read on demand: ``split.images[10:20]``.

    Accepts what h5py accepts (an int, a slice, a sorted array of ints) and more: unsorted or repeated
    index arrays, negative indices and boolean masks (read sorted, then reordered). A tuple key indexes
    the first axis as above and then applies the rest in NumPy, e.g. ``images[0, 100:150, :]``.
    """

    def __init__(self, split: Split) -> None:
        self._split = split

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._split._dset("images").shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self._split._dset("images").dtype)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(split.images)``: every image, read from the file. ``copy=False`` is refused (ValueError),
        as h5py refuses it, since a read always makes a new array."""
        if copy is False:
            raise ValueError("split.images is read from the file: a new array cannot be avoided; use copy=None")
        data = self._split._read_all()
        return data if dtype is None else data.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The images one by one, (H, W) each, read in blocks of about ITER_BYTES; each its own array (a
        view would keep its whole block alive)."""
        n = len(self)
        per_image = max(1, int(np.prod(self.shape[1:])) * self.dtype.itemsize)
        step = max(1, ITER_BYTES // per_image)
        for start in range(0, n, step):
            for image in self._split._read_sorted(np.arange(start, min(n, start + step))):
                yield image.copy()

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        out = self._split._read_first_axis(key)
        return out[(slice(None), *rest)] if rest and out.ndim == 3 else (out[rest] if rest else out)

    def __repr__(self) -> str:
        return f"<xraycache images {self.shape} {self.dtype}>"


def _parts(dset: h5py.Dataset | JoinedRows) -> tuple[JoinedPart, ...]:
    """The datasets that hold ``dset``'s rows: its shards' (a sharded cache) or itself (file -1)."""
    return dset.parts if isinstance(dset, JoinedRows) else (JoinedPart(0, -1, dset),)


@dataclass(frozen=True)
class _Layout:
    """Where a split's uncompressed images lie: each part's rows as one run of bytes in its file."""

    parts: tuple[JoinedPart, ...]
    offsets: list[int]
    per_image: int

    def owner(self, rows: np.ndarray) -> np.ndarray:
        """The part holding each of ``rows``."""
        if len(self.parts) == 1:
            return np.zeros(rows.shape, dtype=np.int64)
        return np.searchsorted([part.start for part in self.parts], rows, side="right") - 1

    def files(self, owner: np.ndarray) -> list[int]:
        """The files (-1 the cache's, else a shard's) of the parts numbered in ``owner``."""
        if len(self.parts) == 1:
            return [self.parts[0].shard]
        return [self.parts[which].shard for which in np.unique(owner).tolist()]

    def where(self, part: int, row: int) -> tuple[int, int]:
        """(file, byte offset) of ``row``, which part number ``part`` holds."""
        held = self.parts[part]
        return held.shard, self.offsets[part] + (row - held.start) * self.per_image


class Meta(Mapping[str, np.ndarray]):
    """Per-image provenance of a split: column name -> NumPy array (strings as str, not bytes)."""

    def __init__(self, split: Split) -> None:
        self._split = split
        self._cache: dict[str, np.ndarray] = {}

    def _group(self) -> RowsGroup:
        return self._split._group()["meta"]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            group = self._group()
            if name not in group:
                raise KeyNotFoundError(f"no meta column {name!r}; available: {', '.join(group)}")
            self._cache[name] = self._split._handle.read(group[name])
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._group()))

    def __len__(self) -> int:
        return len(self._group())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._group()  # without reading the column

    def row(self, index: int) -> dict[str, Any]:
        """All columns of one image as plain Python values."""
        n = len(self._split)
        i = int(_check_indices(np.array([index]), n, f"split {self._split.name!r}")[0])
        return {name: self[name][i].item() for name in self}


class Split:
    """One split (train/val/test/...) of a cache: ``images``, ``labels``, ``meta``, ``load()``, ``batches()``.

    Pickles as (path, split name); the unpickled copy opens the file itself on first use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        _handle: _Handle | None = None,
        opened: Opened | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name
        self._shared = _handle is not None  # the Cache's file: the Cache closes it
        self._handle = _handle if _handle is not None else _Handle(self.path, opened=opened)
        self._layout: _Layout | None = None  # where uncompressed images lie, run by run
        self._layout_pid = -1
        self._labels: np.ndarray | None = None
        self._label_names: tuple[str, ...] | None = None
        self.images = Images(self)
        self.meta = Meta(self)
        if _handle is None:  # validate eagerly when built by hand, so a wrong name fails here
            self._group()

    # -- pickling: path, name, and which file was opened --------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "opened": self._handle.opened}

    def __setstate__(self, state: dict[str, Any]) -> None:
        handle = _Handle(Path(state["path"]), opened=state.get("opened"))
        self.__init__(state["path"], state["name"], _handle=handle)  # type: ignore[misc]
        self._shared = False

    # -- file access --------------------------------------------------------------------
    def _group(self) -> RowsGroup:
        file = self._handle.file
        group = file.get(self.name)
        if not isinstance(group, RowsGroup) or "images" not in group:
            splits = [s for s in attr_value(file.attrs.get("splits", ())) if s in file]
            raise KeyNotFoundError(f"{self.path} has no split {self.name!r}; available: {', '.join(splits) or 'none'}")
        return group

    def _dset(self, name: str) -> h5py.Dataset | JoinedRows:
        return self._group()[name]

    def _contiguous(self) -> _Layout | None:
        """Where the images lie when each file stores its rows as one uncompressed run of bytes, else None."""
        if self._layout_pid == os.getpid():
            return self._layout
        layout = None
        dset = self._dset("images")
        parts = _parts(dset)
        if dset.size and all(
            part.dataset.chunks is None and part.dataset.compression is None and not part.dataset.is_virtual
            for part in parts
        ):
            offsets = [part.dataset.id.get_offset() for part in parts]
            if all(offset is not None for offset in offsets):
                per_image = int(np.prod(dset.shape[1:])) * dset.dtype.itemsize
                layout = _Layout(parts, [int(offset) for offset in offsets], per_image)
        self._layout, self._layout_pid = layout, os.getpid()
        return layout

    def _pread(self, into: np.ndarray, file: int, offset: int) -> None:
        """Fill ``into`` with the bytes at ``offset`` of the cache file (``file`` -1) or of its shard number
        ``file``, as opened (positional reads: no memory map to fault on)."""
        fd = self._handle.raw_fd(file)
        view = into.reshape(-1).data.cast("B")
        got = 0
        while got < into.nbytes:
            n = os.preadv(fd, [view[got:]], offset + got)
            if not n:
                raise NotACacheError(
                    f"{self.path} ends before its images do: it was truncated or replaced while being read; "
                    "open it again, or rebuild it"
                )
            got += n

    def _read_sorted(self, index: np.ndarray) -> np.ndarray:
        """Images at sorted, unique indices, in large reads: one positional read per run of consecutive
        images (contiguous caches), or whole chunks through h5py (compressed or sharded caches)."""
        dset = self._dset("images")
        out = np.empty((index.size, *dset.shape[1:]), dtype=dset.dtype)
        if index.size == 0:
            return out
        layout = self._contiguous()
        if layout is not None:
            owner = layout.owner(index)
            breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(owner) != 0)) + 1
            starts = np.concatenate(([0], breaks)).tolist()
            stops = [*breaks.tolist(), index.size]
            for start, stop in zip(starts, stops, strict=True):
                self._pread(out[start:stop], *layout.where(int(owner[start]), int(index[start])))
            self._handle.file.check_unchanged(layout.files(owner))
            return out
        read = []
        for part in _parts(dset):  # whole chunks through h5py, shard by shard
            first, last = np.searchsorted(index, [part.start, part.stop]).tolist()
            if first == last:
                continue
            local = index[first:last] - part.start
            rows = part.dataset.chunks[0] if part.dataset.chunks is not None else 1
            chunk = local // rows
            # consecutive runs of needed chunks: one slice read per run, then pick the rows
            breaks = np.flatnonzero(np.diff(chunk) > 1) + 1
            for run in np.split(np.arange(local.size), breaks):
                start = int(chunk[run[0]]) * rows
                stop = min((int(chunk[run[-1]]) + 1) * rows, part.dataset.shape[0])
                try:
                    block = np.asarray(part.dataset[start:stop])
                except (OSError, ValueError, RuntimeError) as exc:
                    raise damaged(dset, exc) from None
                out[first + run] = block[local[run] - start]
            read.append(part.shard)
        self._handle.file.check_unchanged(read)  # HDF5 reads zeros past the end of a file truncated since
        return out

    def read_into(self, index: Any, out: np.ndarray) -> np.ndarray:
        """Write the images at ``index`` (any order, repeats allowed) into ``out`` (len(index), H, W); returns it.

        No array is allocated for the pixels, so a caller can read into memory it owns: a reused buffer, or
        a batch in shared memory that a DataLoader worker then sends without copying.
        """
        idx = _check_indices(np.asarray(index), len(self), f"split {self.name!r}")
        if out.shape != (idx.size, *self.shape[1:]) or out.dtype != self.images.dtype:
            raise InputError(f"out is {out.dtype} {out.shape}; give {self.images.dtype} {(idx.size, *self.shape[1:])}")
        if not idx.size:
            return out
        layout = self._contiguous()
        if layout is None or not out.flags.c_contiguous:  # chunked: whole chunks through h5py
            unique, inverse = np.unique(idx, return_inverse=True)
            out[...] = self._read_sorted(unique)[inverse]
            return out
        owner = layout.owner(idx)
        rows = owner.tolist()
        for pos in np.argsort(idx, kind="stable").tolist():  # in file order: sequential where the batch is
            self._pread(out[pos], *layout.where(rows[pos], int(idx[pos])))  # one positional read, into its row
        self._handle.file.check_unchanged(layout.files(owner))
        return out

    def _read_first_axis(self, key: Any) -> np.ndarray:
        n = len(self)
        what = f"split {self.name!r}"
        if (
            not isinstance(key, (bool, np.bool_, slice, list, tuple))
            and np.ndim(key) == 0
            and hasattr(key, "__index__")
        ):
            key = operator.index(key)  # a NumPy or torch integer scalar, 0-d arrays included
        if isinstance(key, (int, np.integer)):
            i = int(_check_indices(np.array([key]), n, what)[0])
            return self._read_sorted(np.array([i]))[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            key = np.arange(start, stop, step)  # a step-1 slice is one run: one read
        if key is Ellipsis:
            return self._read_all()
        index = _check_indices(np.asarray(key), n, what)
        if index.ndim != 1:
            raise InputError(f"index array of shape {index.shape} for {what}; give a 1-D array of indices")
        unique, inverse = np.unique(index, return_inverse=True)
        data = self._read_sorted(unique)
        return data if unique.size == index.size and np.array_equal(unique, index) else data[inverse]

    # -- public API ----------------------------------------------------------------------
    @property
    def opened(self) -> Opened | None:
        """Which build this split reads (its id and inode); a copy in another process refuses another one."""
        if self._handle.opened is None:
            self._handle.file  # noqa: B018 - opens the file, which records what was opened
        return self._handle.opened

    def __len__(self) -> int:
        return int(self._dset("images").shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, H, W) of the stored images."""
        return tuple(self._dset("images").shape)

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names, indexed by label value."""
        if self._label_names is None:
            self._label_names = tuple(attr_value(self._handle.file.attrs.get("label_names", ())))
        return self._label_names

    @property
    def labels(self) -> np.ndarray:
        """The label of every image (int16 as stored; index into ``label_names``)."""
        if self._labels is None:
            self._labels = self._handle.read(self._dset("labels"))
        return self._labels

    @property
    def multi_label(self) -> bool:
        """True for a multi-label cache (labels an (N, C) multi-hot matrix, e.g. NIH with ``--label-sep``, or
        coded, see :attr:`coded`)."""
        return self.labels.ndim == 2

    @property
    def coded(self) -> bool:
        """True for coded labels (``--label-cols``): (N, C) int8, 1 positive, 0 negative, -1 uncertain, -2
        missing; training targets come through a ``label_policy`` (``xraycache.read.label_policy``)."""
        return self.labels.ndim == 2 and self.labels.dtype == np.int8

    def annotator_labels(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray] | None:
        """Each annotator's labels, for a cache built with ``--annotator-col`` (None otherwise):
        (annotator names, ``annotators`` (N, A) int16 indices into them, -1 for an empty slot, and
        ``annotator_labels`` (N, A, C) int8 codes, 1/0/-1/-2 as in a coded cache, -2 throughout an empty slot).
        ``labels`` is the image's union of them."""
        group = self._group()
        if "annotators" not in group:
            return None
        names = tuple(attr_value(self._handle.file.attrs.get("annotator_names", ())))
        return names, read_data(group["annotators"]), read_data(group["annotator_labels"])

    def targets(self, label_policy: str | LabelPolicy) -> tuple[np.ndarray, np.ndarray]:
        """(targets, mask) float32 (N, C) of a coded cache under ``label_policy`` ("u-ones", "u-zeros",
        "u-ignore", "xrv" or a LabelPolicy): see ``xraycache.read.label_policy``."""
        policy = label_policy_of(label_policy)
        if policy is None or not self.coded:
            raise InputError(f"{self.path}: label_policy applies to coded labels (a cache built with --label-cols)")
        return policy.apply(self.labels, self.label_names)

    def _training_labels(
        self, label_policy: str | LabelPolicy | None, label_dtype: Any
    ) -> tuple[LabelPolicy | None, np.dtype[Any]]:
        """The policy asked for (checked against the cache's kind) and the labels' output dtype."""
        policy = label_policy_of(label_policy)
        if policy is not None and not self.coded:
            raise InputError(f"{self.path}: label_policy applies to coded labels (a cache built with --label-cols)")
        if policy is None and self.coded and label_dtype is None:
            raise coded_without_policy(self.path)
        return policy, label_dtype_for(self.labels, label_dtype)

    def label_index(self, label: str | int) -> int:
        """A label name (or number) -> its value; InputError listing the names if it is not one."""
        names = self.label_names
        if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(names):
            return int(label)
        if isinstance(label, str) and label in names:
            return names.index(label)
        if isinstance(label, str) and label.isdigit() and int(label) < len(names):
            return int(label)
        raise KeyNotFoundError(f"no label {label!r} in {self.path}; use one of: {', '.join(names)}")

    @property
    def descriptors(self) -> np.ndarray | None:
        """(N, 32, 32) uint8 thumbnails the near-duplicate search compares, or None (a cache built before them)."""
        group = self._group()
        return self._handle.read(group["descriptors"]) if "descriptors" in group else None

    def stored_hist(self) -> np.ndarray | None:
        """The (labels, 256) pixel histogram the build stored for this split, or None (a foreign file)."""
        group = self._group()
        if "stats" in group and "hist" in group["stats"]:
            return self._handle.read(group["stats"]["hist"]).astype(np.int64)
        return None

    def counts(self) -> np.ndarray:
        """Images per label value (length ``len(label_names)``)."""
        if self.labels.ndim == 2:  # multi-label (N, C) multi-hot or coded: images having each label (positive)
            return (self.labels == 1).sum(axis=0, dtype=np.int64)
        return np.bincount(self.labels, minlength=len(self.label_names))

    def pixel_mean_std(self) -> tuple[float, float]:
        """Mean and std of every pixel of the split, in stored units (0-255, or 0-65535 for uint16).

        Exact, from the per-image ``meta/mean`` and ``meta/std`` the build stored (all images have one
        size), so no pixel is read; a file without those columns costs one pass over the pixels.
        """
        if "mean" in self.meta and "std" in self.meta:
            return mean_std_from_image_stats(self.meta["mean"], self.meta["std"])
        means, stds = [], []
        for xb, _ in self.batches(256, shuffle=False, channels=None):
            values = xb.reshape(len(xb), -1).astype(np.float64)
            means.append(values.mean(axis=1))
            stds.append(values.std(axis=1))
        if not means:
            return mean_std_from_image_stats(np.zeros(0), np.zeros(0))
        return mean_std_from_image_stats(np.concatenate(means), np.concatenate(stds))

    def pixel_format(
        self,
        dtype: str | np.dtype[Any] | type | None = "float32",
        channels: int | None = 1,
        normalize: str | None = None,
        stats_split: str | None = None,
    ) -> PixelFormat:
        """How this split's images become training arrays (see ``batches()``); InputError for a bad option.

        ``normalize="dataset"`` takes the mean and std of ``stats_split``: by default the cache's ``train``
        split when it has one (so val and test are scaled as the model saw its training data), else this one.
        """
        mean_std = None
        if normalize == "dataset":
            name = stats_split or ("train" if isinstance(self._handle.file.get("train"), RowsGroup) else self.name)
            source = self if name == self.name else Split(self.path, name, _handle=self._handle)
            source._group()  # InputError naming the splits if stats_split is not one
            mean_std = source.pixel_mean_std()
        return PixelFormat.make(self.images.dtype, dtype, channels, normalize, mean_std)

    def load(
        self,
        dtype: str | np.dtype[Any] | type | None = None,
        channels: int | Unset | None = UNSET,
        label_dtype: str | np.dtype[Any] | type | Unset | None = UNSET,
        normalize: str | None = None,
        stats_split: str | None = None,
        label_policy: str | LabelPolicy | None = None,
    ) -> tuple[np.ndarray, ...]:
        """The whole split as NumPy arrays, read in one large read.

        The arrays are what :meth:`batches` and ``xraycache.torch.XrayDataset`` give, for every image at
        once (see ``xraycache.read.arrays`` for the one definition of the reader outputs).

        Parameters
        ----------
        dtype : dtype or None, default None
            None keeps the stored uint8 (or uint16) pixels; a float dtype scales them to [0, 1].
        channels : {1, 3, None}, default 1
            Images (N, 1, H, W), (N, 3, H, W) with the gray repeated, or (N, H, W) for None.
        label_dtype : dtype or None, default None
            None gives int64 class indices, or float32 (N, C) multi-hot rows for a multi-label cache.
        normalize : {None, "dataset", "imagenet", "xrv"}, default None
            For float dtypes: see :meth:`batches`.
        stats_split : str, optional
            The split whose statistics ``normalize="dataset"`` uses (default ``train``).
        label_policy : {"u-ones", "u-zeros", "u-ignore", "xrv"} or LabelPolicy, optional
            Coded caches (``--label-cols``) only, and needed there unless ``label_dtype`` is given: the
            labels become float32 targets and a third array, the float32 loss mask, is returned.

        Returns
        -------
        images : numpy.ndarray
        labels : numpy.ndarray
        mask : numpy.ndarray, with ``label_policy`` only

        Notes
        -----
        Until now ``load()`` returned (N, H, W) images and the labels as stored (int16). Called without
        ``channels`` or ``label_dtype`` it still does, with a FutureWarning; the defaults above take effect in
        a later release. Pass both to choose now.
        """
        if isinstance(channels, Unset) or isinstance(label_dtype, Unset):
            warnings.warn(
                "Split.load() will return images (N, 1, H, W) and int64 labels, as batches() and XrayDataset do; "
                "today it returns (N, H, W) and the stored int16 labels. Pass channels=1, label_dtype=None for the "
                "new output, or channels=None, label_dtype=split.labels.dtype to keep today's",
                FutureWarning,
                stacklevel=2,
            )
            channels = None if isinstance(channels, Unset) else channels
            label_dtype = self.labels.dtype if isinstance(label_dtype, Unset) else label_dtype
        pixels = self.pixel_format(dtype, channels, normalize, stats_split)
        policy, out_labels = self._training_labels(label_policy, label_dtype)
        images = pixels.apply(self._read_all())
        if policy is not None:
            return (images, *policy.apply(self.labels, self.label_names))
        return images, self.labels.astype(out_labels, copy=True)

    def _read_all(self) -> np.ndarray:
        """Every stored image (N, H, W), in one large read."""
        dset = self._dset("images")
        out = np.empty(dset.shape, dtype=dset.dtype)
        layout = self._contiguous()
        if layout is not None:  # one run of bytes in each file: one sequential read per file into the array
            for which, part in enumerate(layout.parts):
                self._pread(out[part.start : part.stop], *layout.where(which, part.start))
        elif dset.size:
            try:
                dset.read_direct(out)
            except (OSError, ValueError, RuntimeError) as exc:
                raise damaged(dset, exc) from None
        self._handle.file.check_unchanged()
        return out

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        balanced: bool = False,
        dtype: str | np.dtype[Any] | type | None = None,
        drop_last: bool = False,
        channels: int | None = 1,
        label_dtype: str | np.dtype[Any] | type | None = None,
        normalize: str | None = None,
        stats_split: str | None = None,
        label_policy: str | LabelPolicy | None = None,
    ) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield ``(images, labels)`` batches for one epoch, reading in large sorted blocks.

        One global order per (seed, epoch): the same pair gives the same batches, another epoch another
        order. Memory stays about 2 x 64 MB whatever the split size. The arrays are what :meth:`load` and
        ``xraycache.torch.XrayDataset`` give (one definition: ``xraycache.read.arrays``), batched.

        Parameters
        ----------
        batch_size : int
            Images per batch; the last short batch is kept unless ``drop_last``.
        shuffle : bool, default True
            A new order per (seed, epoch); False reads in file order.
        seed, epoch : int, default 0
            Pass the epoch number for a new order each epoch.
        balanced : bool, default False
            Draw ``len(split)`` images with replacement, each weighted inverse to its class frequency
            (single-label caches).
        dtype : dtype or None, default None
            None keeps the stored uint8 (or uint16); a float dtype scales to [0, 1].
        drop_last : bool, default False
            Drop the last batch when it is short.
        channels : {1, 3, None}, default 1
            Images (B, 1, H, W), (B, 3, H, W) with the gray repeated, or (B, H, W) for None.
        label_dtype : dtype or None, default None
            None gives int64 class indices, or float32 multi-hot (B, C) for a multi-label cache; e.g.
            ``"int16"`` as stored.
        normalize : {None, "dataset", "imagenet", "xrv"}, default None
            Float dtypes only: the mean and std of ``stats_split`` (by default ``train``), ImageNet's
            constants, or torchxrayvision's [-1024, 1024] range.
        stats_split : str, optional
            The split ``normalize="dataset"`` takes its statistics from.
        label_policy : {"u-ones", "u-zeros", "u-ignore", "xrv"} or LabelPolicy, optional
            Coded caches only (see :meth:`load`): batches are ``(images, targets, mask)``.

        Yields
        ------
        images : numpy.ndarray
        labels : numpy.ndarray
        mask : numpy.ndarray, with ``label_policy`` only
        """
        if batch_size < 1:
            raise InputError(f"batch_size {batch_size} must be at least 1")
        pixels = self.pixel_format(dtype, channels, normalize, stats_split)
        policy, out_labels = self._training_labels(label_policy, label_dtype)
        labels = self.labels
        if policy is not None:
            targets, mask = policy.apply(labels, self.label_names)
        order = self.order(shuffle=shuffle, seed=seed, epoch=epoch, balanced=balanced)
        n_batches = len(order) // batch_size if drop_last else -(-len(order) // batch_size)
        image_bytes = max(1, int(np.prod(self.shape[1:])) * self.images.dtype.itemsize)
        per_block = max(1, BLOCK_BYTES // (image_bytes * batch_size))  # batches per sorted read
        for first in range(0, n_batches, per_block):
            last = min(n_batches, first + per_block)
            idx = order[first * batch_size : last * batch_size]
            unique, inverse = np.unique(idx, return_inverse=True)
            block = self._read_sorted(unique)
            for b in range(last - first):
                pick = inverse[b * batch_size : (b + 1) * batch_size]
                at = idx[b * batch_size : (b + 1) * batch_size]
                if policy is not None:
                    yield pixels.apply(block[pick]), targets[at], mask[at]
                else:
                    yield pixels.apply(block[pick]), labels[at].astype(out_labels, copy=False)

    def order(self, shuffle: bool = True, seed: int = 0, epoch: int = 0, balanced: bool = False) -> np.ndarray:
        """The image indices one epoch of ``batches()`` visits, in order (deterministic in seed and epoch)."""
        n = len(self)
        rng = np.random.default_rng([int(seed), int(epoch)])
        if balanced and n and self.labels.ndim == 2:
            raise InputError(
                "balanced batches need one label per image; this cache is multi-label (use weights of your own)"
            )
        if balanced and n:
            weights = 1.0 / self.counts()[self.labels]
            drawn = rng.choice(n, size=n, replace=True, p=weights / weights.sum())
            return drawn if shuffle else np.sort(drawn)
        return rng.permutation(n) if shuffle else np.arange(n)

    def close(self) -> None:
        """Close a file this Split opened itself."""
        self._layout_pid = -1
        if not self._shared:
            self._handle.close()

    def __repr__(self) -> str:
        return f"<xraycache.Split {self.name!r} of {self.path}: {self.shape} labels {list(self.label_names)}>"

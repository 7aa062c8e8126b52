"""The one validating open of a cache file, for the build (an OUT to update) and every reader.

A cache may come from anyone: :func:`open_cache` checks its structure, types, shapes and sizes before any
of its data is read, so that a hostile or damaged file can only be refused with one line naming the part
and the reason, never make a reader crash, read outside the file or allocate more than the file holds.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import CacheNotFoundError, DecodeError, InputError, NotACacheError
from .files import open_regular
from .pinned import CacheFiles, open_hdf5_pinned
from .reads import attr_value
from .schema import (
    CODES,
    DESCRIPTOR_SIDE,
    FORMAT_NAME,
    FORMAT_VERSION,
    HDF5_SIGNATURE,
    HIST_BINS,
    LABEL_KINDS,
    MAX_LABELS,
    MAX_NAME_CHARS,
    MAX_SPLITS,
    META_COLUMNS,
    SKIPPED_COLUMNS,
    STR,
    split_name_problem,
)
from .shard_files import missing_shard_message

BUILD_HINT = "give a cache written by `xraycache build SRC OUT`"
# Bounds on what a cache may claim, checked before anything of that size is read (docs/reliability.md, "Untrusted caches").
MAX_ROOT_ATTRIBUTES = 200
MAX_MEMBERS = 200  # datasets in one group (meta columns, stats)
MAX_SHARDS = 4096
MAX_COMPRESSION = 1024  # logical / stored bytes of a compressed dataset (gzip of a black image: ~700)
# The most one chunk may hold, decompressed: HDF5 decompresses a whole chunk to read any row of it, so a
# chunk of a gigabyte made every small read cost a gigabyte. The build's chunks hold 8 images (at most
# 256 MB: 4096 px uint16), other columns are not chunked; 8 rows of any dataset are always allowed.
MAX_CHUNK_BYTES = 64 << 20
MAX_CHUNK_ROWS_ALWAYS = 8
VLEN_BYTES = 16  # what HDF5 stores per variable-length string in the dataset itself (the rest in its heap)
REQUIRED_META = ("path", "patient", "file_hash", "file_size", "mtime_ns", "width", "height", "min", "max")
STRING_META = frozenset(name for name, dtype in META_COLUMNS.items() if dtype is STR)
INTEGER_META = frozenset(
    name for name, dtype in META_COLUMNS.items() if dtype is not STR and np.dtype(dtype).kind in "iu"
)
MAX_ITEM_BYTES = 4096  # one value of any dataset (the widest the format writes is a 64-byte hash)
_LAYOUTS = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked"}


def open_cache(path: str | os.PathLike[str], *, consistent: bool = True) -> CacheFiles:
    """Open ``path`` read-only as an xraycache file, checked before any of its data is read.

    InputError when nothing usable is at the path (missing, a folder); NotACacheError, with one line naming
    the part and the reason, for a file that is not HDF5, is damaged or truncated, is another tool's or a
    newer format's, or that could make a reader read outside it (external storage or links, virtual datasets
    outside its shard folder, soft links), crash (wrong dtypes or shapes) or allocate more than the file
    holds (counts and lengths bounded by its size). ``consistent`` (every reader) also requires every
    per-image dataset to have one row per image and labels in range; ``verify`` opens with it off and
    reports such differences itself.

    A sharded cache's shard files are opened here too, each once, without following links, and must be of
    the cache's own build; the :class:`CacheFiles` returned reads its rows through those handles only
    (``core/pinned.py``), so a shard swapped after this check is never read.
    """
    path = Path(path)
    if not path.exists():
        raise CacheNotFoundError(f"{path}: no such file; {BUILD_HINT}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; {BUILD_HINT}")
    try:
        handle, _ = open_regular(path)  # a FIFO or a device would block, or never end
        with handle:
            signature = handle.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except DecodeError as exc:
        raise NotACacheError(f"{path} is {str(exc).removeprefix('not a regular file: ')}, not a cache file") from None
    if signature != HDF5_SIGNATURE:
        raise NotACacheError(f"{path} is not an HDF5 file; {BUILD_HINT}")
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc) else "damaged"
        raise NotACacheError(f"{path} is a {reason} HDF5 file that cannot be opened; rebuild it") from None
    check = _CacheCheck(path, file, consistent)
    try:
        check.run()
    except BaseException:
        for handle in (*check.shard_handles, file):
            handle.close()
        raise
    return CacheFiles(file, tuple(check.shard_handles), tuple(check.shard_files), check.joined)


class _Refused(Exception):
    """A part of the file that is not what the format says: (part, reason)."""


class _CacheCheck:
    """The checks of :func:`open_cache` on one open file (and, for a sharded cache, on each shard)."""

    def __init__(self, path: Path, file: h5py.File, consistent: bool, shard_of: Path | None = None) -> None:
        self.path = path
        self.file = file
        self.consistent = consistent
        self.shard_of = shard_of  # the sharded cache this file is a shard of
        self.size = path.stat().st_size
        self.shard_files: list[str] = []  # "folder/shard-0000.h5": what a virtual dataset may read
        self.shard_handles: list[h5py.File] = []  # each shard, opened once and kept open for the readers
        self.shard_checks: list[_CacheCheck] = []
        self.checked: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {}  # datasets whose storage was checked
        # (what a virtual dataset may join): name -> dtype, shape
        self.joined: dict[str, tuple[int, ...]] = {}  # virtual dataset -> the shards whose rows it joins

    def run(self) -> None:
        try:
            self._root()
        except _Refused as refused:
            part, reason = refused.args
            where = f"{self.shard_of}: shard {self.path.name}" if self.shard_of else str(self.path)
            raise NotACacheError(f"{where} is not a valid xraycache cache: {part}: {reason}") from None
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # HDF5 could not read a part
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise NotACacheError(f"{self.path} is a damaged xraycache cache ({first}); rebuild it") from None

    # -- root ------------------------------------------------------------------------------

    def _attr(self, name: str, *, max_items: int = 1, default: Any = None) -> Any:
        """A root attribute, decoded, after checking how many values it holds."""
        if name not in self.file.attrs:
            return default
        aid = h5py.h5a.open(self.file.id, name.encode())
        items = int(np.prod(aid.shape)) if aid.shape else 1
        if items > max_items:
            raise _Refused(f"attribute {name}", f"holds {items:,} values (at most {max_items:,})")
        return attr_value(self.file.attrs[name])

    def _names(self, name: str, limit: int) -> tuple[str, ...]:
        value = self._attr(name, max_items=limit, default=None)
        if value is None:
            raise _Refused(f"attribute {name}", "missing")
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise _Refused(f"attribute {name}", "is not a list of names")
        long = [v for v in value if len(v) > MAX_NAME_CHARS]
        if long:
            raise _Refused(f"attribute {name}", f"a name of {len(long[0]):,} characters (at most {MAX_NAME_CHARS:,})")
        if len(set(value)) != len(value):
            raise _Refused(f"attribute {name}", "names a value twice")
        return value

    def _root(self) -> None:
        if self._attr("format", default="") != FORMAT_NAME:
            raise NotACacheError(f"{self.path} is an HDF5 file written by another tool, not an xraycache cache")
        if len(self.file.attrs) > MAX_ROOT_ATTRIBUTES:
            raise _Refused("root", f"{len(self.file.attrs):,} attributes (at most {MAX_ROOT_ATTRIBUTES})")
        for name in self.file.attrs:  # every reader decodes them all (Cache.attrs, info)
            try:
                self._attr(name, max_items=MAX_LABELS)
            except TypeError:
                raise _Refused(f"attribute {name}", "has a type NumPy cannot represent") from None
        version = self._attr("format_version", default=0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise _Refused("attribute format_version", f"{version!r} is not a whole number")
        if version > FORMAT_VERSION:
            raise NotACacheError(
                f"{self.path} has format version {version}, newer than this xraycache reads ({FORMAT_VERSION}); upgrade it"
            )
        self.labels = self._names("label_names", MAX_LABELS)
        self.annotators = self._names("annotator_names", MAX_LABELS) if "annotator_names" in self.file.attrs else []
        splits = self._names("splits", MAX_SPLITS)
        side = self._attr("size")
        if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= 65_536:
            raise _Refused("attribute size", f"{side!r} is not an image side in pixels")
        self.side = side
        self.dtype = self._attr("dtype", default="uint8")
        if self.dtype not in ("uint8", "uint16"):
            raise _Refused("attribute dtype", f"{self.dtype!r} is not uint8 or uint16")
        kind = self._attr("label_kind", default="single")
        if kind not in LABEL_KINDS or (kind == "coded" and version < 4):
            raise _Refused("attribute label_kind", f"{kind!r} is not a label kind of format version {version}")
        self.kind = kind
        self.multi = kind == "multi"
        self._shards()
        for split in splits:
            if split_name_problem(split):
                raise _Refused(f"split {split!r}", "is not a split name")
            self._split(split)
        if "skipped" in self.file:
            self._skipped()

    def _shards(self) -> None:
        self.sharded = "shard_files" in self.file.attrs
        if not self.sharded:
            return
        if self.shard_of is not None:
            raise _Refused("root", "a shard that is itself sharded")
        folder = self._attr("shard_dir", default="")
        if not isinstance(folder, str) or not folder or "/" in folder or folder in (".", ".."):
            raise _Refused("attribute shard_dir", f"{folder!r} is not a folder name beside the cache")
        names = self._names("shard_files", MAX_SHARDS)
        for name in names:
            if "/" in name or not name.startswith("shard-") or not name.endswith(".h5"):
                raise _Refused("attribute shard_files", f"{name!r} is not a shard file name")
        if (self.path.parent / folder).is_symlink():  # it would lead HDF5 to files anywhere
            raise _Refused(f"shard folder {folder}", "is a symbolic link, not a folder beside the cache")
        missing = missing_shard_message(self.path, self.file.attrs)
        if missing:
            raise NotACacheError(missing)
        self.shard_files = [f"{folder}/{name}" for name in names]
        build = self._attr("build_id", default="")
        for relative in self.shard_files:
            shard = self.path.parent / relative
            try:
                handle = open_hdf5_pinned(shard)
            except DecodeError as exc:
                raise _Refused(f"shard {relative}", str(exc)) from None
            except OSError as exc:
                if exc.errno == errno.EMFILE:  # a reader holds every shard open
                    raise InputError(
                        f"{self.path}: too many open files to open its {len(self.shard_files):,} shards; "
                        "raise the limit (ulimit -n) or rebuild it with fewer shards"
                    ) from None
                raise _Refused(f"shard {relative}", "is not a readable HDF5 file") from None
            self.shard_handles.append(handle)
            check = _CacheCheck(shard, handle, self.consistent, shard_of=self.path)
            check.run()
            self.shard_checks.append(check)
            theirs = attr_value(handle.attrs.get("build_id", ""))
            if build and theirs != build:
                raise _Refused(f"shard {relative}", "was written by another build than the cache")

    # -- groups and datasets -----------------------------------------------------------------

    def _member(self, group: h5py.Group, name: str, kind: type) -> Any:
        """``group[name]``, which must be a hard link (no soft or external link) to a ``kind``."""
        where = f"{group.name.rstrip('/')}/{name}"
        link = group.get(name, getlink=True)
        if link is None:
            raise _Refused(where, "missing")
        if not isinstance(link, h5py.HardLink):
            what = "an external link to another file" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise _Refused(where, f"is {what}, not data stored in the file itself")
        item = group[name]
        if not isinstance(item, kind):
            raise _Refused(where, f"is a {type(item).__name__.lower()}, not a {kind.__name__.lower()}")
        return item

    def _members(self, group: h5py.Group) -> list[str]:
        count = group.id.get_num_objs()
        if count > MAX_MEMBERS:
            raise _Refused(group.name, f"{count:,} members (at most {MAX_MEMBERS})")
        return list(group)

    def _dataset(self, group: h5py.Group, name: str) -> h5py.Dataset:
        """A dataset of ``group`` whose bytes all lie in this file (or, sharded, in its shards)."""
        dset = self._member(group, name, h5py.Dataset)
        where = dset.name
        if dset.external:
            raise _Refused(where, "is stored in another file (external raw storage)")
        if dset.is_virtual:
            self._virtual(dset)
            return dset
        self.checked[where] = (dset.dtype, dset.shape)
        if dset.dtype.itemsize > MAX_ITEM_BYTES:
            raise _Refused(where, f"has values of {dset.dtype.itemsize:,} bytes each (at most {MAX_ITEM_BYTES:,})")
        layout = dset.id.get_create_plist().get_layout()
        if layout not in _LAYOUTS:
            raise _Refused(where, f"has storage layout {layout}, not one HDF5 stores in the file")
        vlen = h5py.check_vlen_dtype(dset.dtype) is not None or (
            h5py.check_string_dtype(dset.dtype) is not None and dset.dtype.kind == "O"
        )
        rows = int(np.prod(dset.shape, dtype=np.float64)) if dset.shape else 1
        expected = rows * (VLEN_BYTES if vlen else dset.dtype.itemsize)
        stored = dset.id.get_storage_size()
        bound = MAX_COMPRESSION * self.size + (1 << 20) if _LAYOUTS[layout] == "chunked" else self.size
        if expected > bound or stored > self.size:
            raise _Refused(where, f"claims {dset.shape} of {dset.dtype}, more than the {self.size:,}-byte file holds")
        if _LAYOUTS[layout] == "chunked":
            chunks = int(np.prod([-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True)]))
            if dset.id.get_num_chunks() != chunks:
                raise _Refused(where, "has chunks that were never written (a reader would see fill values)")
            value = VLEN_BYTES if vlen else dset.dtype.itemsize
            chunk = int(np.prod(dset.chunks, dtype=np.float64)) * value
            row = int(np.prod(dset.chunks[1:], dtype=np.float64)) * value if dset.chunks[1:] else value
            if chunk > max(MAX_CHUNK_BYTES, MAX_CHUNK_ROWS_ALWAYS * row):
                raise _Refused(
                    where,
                    f"has chunks of {chunk:,} bytes (at most {MAX_CHUNK_BYTES:,}): each read would decompress one",
                )
        elif rows:
            if stored != expected:
                raise _Refused(where, f"holds {stored:,} bytes where its shape needs {expected:,}")
            offset = dset.id.get_offset()
            if _LAYOUTS[layout] == "contiguous" and (offset is None or offset + stored > self.size):
                raise _Refused(where, "points past the end of the file")
        return dset

    def _virtual(self, dset: h5py.Dataset) -> None:
        """A virtual dataset may only join, in order, the rows of the same dataset in this cache's own shard
        files (each checked as a cache of its own): what the readers read through the shard handles."""
        if not self.sharded:
            source = next(iter(dset.virtual_sources()), None)
            reading = f" reading {source.file_name}" if source is not None else ""
            raise _Refused(dset.name, f"is a virtual dataset{reading}, in a cache that is not sharded")
        expected = []
        joined = []
        start = 0
        dtype, shape = dset.dtype, dset.shape
        for index, (relative, check) in enumerate(zip(self.shard_files, self.shard_checks, strict=True)):
            part_dtype, part_shape = check.checked.get(dset.name, (None, (0,)))
            if part_shape[0] == 0:
                continue
            joined.append(index)
            if part_dtype != dtype or part_shape[1:] != shape[1:]:
                raise _Refused(dset.name, f"is {dtype} {shape[1:]} where shard {relative} has another kind")
            last = [start + part_shape[0] - 1, *(n - 1 for n in shape[1:])]
            expected.append((relative, dset.name, [[start, *(0 for _ in shape[1:])], last]))
            start += part_shape[0]
        found = []
        for source in dset.virtual_sources():
            if source.file_name not in self.shard_files or source.dset_name != dset.name:
                raise _Refused(dset.name, f"reads {source.file_name}:{source.dset_name}, outside its own shards")
            whole = source.src_space.get_select_type() == h5py.h5s.SEL_ALL
            slab = source.vspace.get_select_type() == h5py.h5s.SEL_HYPERSLABS
            blocks = source.vspace.get_select_hyper_blocklist().tolist() if whole and slab else None
            if blocks is None or len(blocks) != 1:
                raise _Refused(dset.name, f"reads part of {source.file_name}, not its rows in order")
            found.append((source.file_name, source.dset_name, blocks[0]))
        if found != expected or start != shape[0]:
            raise _Refused(dset.name, "does not join its shards' rows in order")
        self.joined[dset.name] = tuple(joined)

    def _split(self, split: str) -> None:
        group = self._member(self.file, split, h5py.Group)
        images = self._dataset(group, "images")
        where = images.name
        if images.dtype not in (np.uint8, np.uint16) or images.ndim != 3:
            raise _Refused(where, f"is {images.shape} {images.dtype}, not (N, H, W) uint8 or uint16")
        n = images.shape[0]
        if self.consistent and images.shape[1:] != (self.side, self.side):
            raise _Refused(where, f"images are {images.shape[1]}x{images.shape[2]}, the file says {self.side}")
        if self.consistent and images.dtype != np.dtype(self.dtype):
            raise _Refused(where, f"images are {images.dtype}, the file says {self.dtype}")
        labels = self._dataset(group, "labels")
        if labels.dtype.kind not in "iu" or labels.ndim not in (1, 2):
            raise _Refused(labels.name, f"is {labels.shape} {labels.dtype}, not integer labels")
        if "checksums" in group:
            checksums = self._dataset(group, "checksums")
            if checksums.dtype.kind != "S" or checksums.ndim != 1:
                raise _Refused(checksums.name, f"is {checksums.dtype}, not fixed-length checksums")
            self._rows(checksums, n)
        if "descriptors" in group:
            descriptors = self._dataset(group, "descriptors")
            if descriptors.dtype != np.uint8 or descriptors.shape[1:] != (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE):
                raise _Refused(
                    descriptors.name,
                    f"is {descriptors.shape} {descriptors.dtype}, not (N, {DESCRIPTOR_SIDE}, {DESCRIPTOR_SIDE}) uint8",
                )
            self._rows(descriptors, n)
        self._rows(labels, n)
        self._label_values(labels)  # also for verify: an index out of range would crash any reader
        self._annotator_labels(group, n)
        meta = self._member(group, "meta", h5py.Group)
        for name in REQUIRED_META:
            if name not in meta:
                raise _Refused(f"{meta.name}/{name}", "missing")
        for name in self._members(meta):
            column = self._dataset(meta, name)
            if column.ndim != 1:
                raise _Refused(column.name, f"is {column.shape}, not one value per image")
            is_string = h5py.check_string_dtype(column.dtype) is not None
            if name in STRING_META and not is_string:
                raise _Refused(column.name, f"is {column.dtype}, not text")
            if not is_string and column.dtype.kind not in ("iu" if name in INTEGER_META else "iuf"):
                raise _Refused(
                    column.name, f"is {column.dtype}, not {'whole numbers' if name in INTEGER_META else 'numbers'}"
                )
            self._rows(column, n)
        if "stats" in group:
            stats = self._member(group, "stats", h5py.Group)
            for name, shape in (("hist", (len(self.labels), HIST_BINS)), ("count", (len(self.labels),))):
                table = self._dataset(stats, name)
                if table.dtype.kind not in "iu" or table.shape != shape:
                    raise _Refused(table.name, f"is {table.shape} {table.dtype}, not {shape} counts")

    def _rows(self, dset: h5py.Dataset, n: int) -> None:
        if self.consistent and dset.shape[0] != n:
            raise _Refused(dset.name, f"has {dset.shape[0]:,} rows for {n:,} images")

    def _label_values(self, labels: h5py.Dataset) -> None:
        classes = len(self.labels)
        if (self.kind == "coded") != (labels.dtype == np.int8 and labels.ndim == 2):
            raise _Refused(labels.name, f"is {labels.shape} {labels.dtype}; label_kind {self.kind!r} says otherwise")
        if self.kind == "coded":
            if labels.shape[1] != classes:
                raise _Refused(labels.name, f"has {labels.shape[1]} columns for {classes} labels")
            values = labels[()]
            bad = values[~np.isin(values, CODES)]
            if bad.size:
                raise _Refused(labels.name, f"holds {int(bad[0])}, not a code (1, 0, -1, -2)")
            return
        if labels.ndim == 2:
            if labels.shape[1] != classes:
                raise _Refused(labels.name, f"has {labels.shape[1]} columns for {classes} labels")
            top = 1
        else:
            top = classes - 1
        values = labels[()]
        if values.size and (values.min() < 0 or values.max() > top):
            bad = int(values.min()) if values.min() < 0 else int(values.max())
            raise _Refused(labels.name, f"holds {bad}, outside 0..{top}")

    def _annotator_labels(self, group: h5py.Group, n: int) -> None:
        """``annotators`` (N, A) indices into annotator_names (-1: empty) and ``annotator_labels`` (N, A, C)
        codes: both or neither, and only values a reader can index with."""
        present = [name in group for name in ("annotators", "annotator_labels")]
        if not any(present):
            return
        if not all(present):
            raise _Refused(group.name, "has one of annotators and annotator_labels without the other")
        who = self._dataset(group, "annotators")
        codes = self._dataset(group, "annotator_labels")
        if who.dtype.kind not in "iu" or who.ndim != 2:
            raise _Refused(who.name, f"is {who.shape} {who.dtype}, not (N, A) annotator indices")
        if codes.dtype != np.int8 or codes.shape[1:] != (who.shape[1], len(self.labels)):
            raise _Refused(
                codes.name, f"is {codes.shape} {codes.dtype}, not (N, {who.shape[1]}, {len(self.labels)}) int8"
            )
        self._rows(who, n)
        self._rows(codes, n)
        values = who[()]
        if values.size and (values.min() < -1 or values.max() >= len(self.annotators)):
            raise _Refused(who.name, f"holds an index outside -1..{len(self.annotators) - 1}")
        coded = codes[()]
        if coded.size and not np.isin(coded, CODES).all():
            raise _Refused(codes.name, "holds a value that is not a code (1, 0, -1, -2)")

    def _skipped(self) -> None:
        group = self._member(self.file, "skipped", h5py.Group)
        lengths = set()
        for name in SKIPPED_COLUMNS:
            column = self._dataset(group, name)
            if h5py.check_string_dtype(column.dtype) is None or column.ndim != 1:
                raise _Refused(column.name, f"is {column.dtype}, not text")
            lengths.add(column.shape[0])
        if len(lengths) > 1:
            raise _Refused(group.name, "columns of different lengths")

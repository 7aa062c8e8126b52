"""Opening source files that may be hostile: only regular files, never blocking, never reading without bound.

A FIFO named ``x.jpeg`` would block ``open`` forever, a symlink named ``y.jpeg`` to ``/dev/zero`` would read
until memory runs out. Every source file the package reads (the scan's content sniffing, the workers'
decode, the hashes of incremental rebuilds and ``verify``) goes through :func:`open_regular`: opened with
``O_NONBLOCK`` (which does not block on a FIFO) and kept only if ``fstat`` says it is a regular file.
Symlinks to regular files are followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import BinaryIO

from .errors import DecodeError

HASH_BLOCK = 1 << 20  # bytes read at a time when hashing a file

KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def open_regular(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """The file at ``path`` opened for reading, and its stat; DecodeError if it is not a regular file.

    OSError (missing, unreadable) is left to the caller, which words it for its own context.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise DecodeError(f"not a regular file: {kind}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at ``path``, at most ``limit`` of them; DecodeError past that."""
    handle, info = open_regular(path)
    with handle:
        if info.st_size > limit:
            raise DecodeError(f"file of {info.st_size:,} bytes is over the size limit of {limit:,}")
        # Ask for the size fstat gave (+1 to see growth), not for ``limit``: a read of n bytes allocates n
        # first, and allocating the limit for every file costs about as much as reading a radiograph
        # (``python -m benchmarks.hotpath --sections per_image``, stage ``read``).
        data = handle.read(min(info.st_size, limit) + 1)
        if len(data) > info.st_size:  # it grew since fstat: read on, up to the limit
            data += handle.read(limit + 1 - len(data))
    if len(data) > limit:  # it grew while being read
        raise DecodeError(f"file of more than {limit:,} bytes is over the size limit")
    return data, info


def file_sha256(path: str | os.PathLike[str]) -> bytes:
    """Hex sha256 of a file's bytes (the ``file_hash`` column), read in blocks; only regular files
    (OSError for anything else, so callers count it as changed or unreadable)."""
    digest = hashlib.sha256()
    try:
        handle, _ = open_regular(path)
    except DecodeError as exc:
        raise OSError(str(exc)) from None
    with handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest().encode("ascii")

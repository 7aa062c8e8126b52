"""OUT on disk: checks before a build writes it, the lock that keeps two builds from writing it at once, its
size (with its shards), and OS errors worded for one line."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from ..core.errors import InputError
from ..core.schema import HDF5_SIGNATURE
from ..core.shard_files import cache_bytes


def check_output(out: Path) -> None:
    """InputError unless OUT can be written: a file name (not a folder) in a writable folder."""
    if out.is_dir():
        raise InputError(f"output {out} is a folder; give a file name such as {out / 'cache.h5'}")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"cannot write {out}: folder {out.parent} is not writable")


def check_not_source(out: Path, root: Path, sources: Iterable[str]) -> None:
    """InputError when OUT is one of the files the scan found under ``root`` (``sources``, relative paths),
    by its name or through a link: the build would replace one of its own inputs. A cache inside SRC stays
    allowed (the scan passes over it), and so does an existing cache as OUT: only a file that is not an HDF5
    file is compared with the sources."""
    try:
        info = os.stat(out)
        if not stat.S_ISREG(info.st_mode):
            return  # a FIFO would block the read below; a scanned source is a regular file
        with open(out, "rb") as handle:
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return
    except OSError:
        return  # no file there (or none this user can read): nothing of the sources to replace
    for path in sources:
        try:
            other = os.stat(root / path)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
            raise InputError(f"output {out} is the source file {path}; give OUT a name outside the source files")


LOCK_TRIES = 5


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT for the whole build, so two builds never write it at once.

    The lock is ``.OUT.lock`` beside OUT, opened without following links and without blocking (a FIFO or
    a link planted there is refused), readable by everyone (flock needs no write access, so another user of
    a shared folder can take it next), and deleted by the build that holds it: no lock file stays behind.
    A build that locked a file another one had just deleted finds the name gone or pointing elsewhere, and
    tries again.
    """
    lock_path = out.parent / f".{out.name}.lock"
    flags = os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(LOCK_TRIES):
        try:
            fd = os.open(lock_path, flags, 0o444)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(f"cannot lock {out}: {lock_path.name} is a symbolic link; remove it") from None
            raise InputError(f"cannot lock {out}: {lock_path.name}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"cannot lock {out}: {lock_path.name} is not a regular file; remove it")
            if info.st_uid == os.geteuid():
                os.fchmod(fd, 0o444)  # the umask may have taken the others' read bit
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"another xraycache build is writing {out}; wait for it to finish") from None
            try:
                now = os.stat(lock_path, follow_symlinks=False)
            except FileNotFoundError:
                continue  # the build before this one deleted it after we opened it: try again
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                continue
            try:
                yield
            finally:
                with contextlib.suppress(OSError):  # in a folder this user may not delete in: it stays
                    os.unlink(lock_path)
            return
        finally:
            os.close(fd)
    raise InputError(f"cannot lock {out}: {lock_path.name} keeps changing; is another build starting?")


def os_reason(exc: OSError) -> str:
    """The short reason of an OS error, also out of HDF5's long messages (``error message = '...'``)."""
    text = f"{exc.strerror or ''} {exc}"
    match = re.search(r"error message = '([^']+)'", text) or re.search(r"errno = (\d+)", text)
    if match:
        value = match.group(1)
        return os.strerror(int(value)) if value.isdigit() else value
    if exc.errno and not exc.strerror:
        return os.strerror(exc.errno)
    first = (exc.strerror or str(exc) or type(exc).__name__).splitlines()[0]
    return first if len(first) <= 200 else first[:200] + "..."


def output_bytes(out: Path) -> int:
    """Bytes of the cache at ``out``, its shard files included."""
    try:
        with h5py.File(out, "r") as handle:
            return cache_bytes(out, handle.attrs)
    except OSError:
        return out.stat().st_size

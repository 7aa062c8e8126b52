"""Writing a file so that a reader, or a crash, only ever sees the old file or the complete new one.

The new file is written as ``.OUT.<random>.tmp`` beside OUT, made durable (fsync) and renamed over OUT
(``os.replace``, atomic on POSIX), then the folder is fsynced. Every file the build writes in place of
another (the cache, the file that joins shards, a compacted copy) goes through :class:`AtomicFile`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def new_temporary(out: Path) -> Path:
    """A new empty ``.OUT.<random>.tmp`` beside ``out``, with the permissions OUT will have."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.fchmod(fd, output_mode(out))
    finally:
        os.close(fd)
    return Path(tmp)


class AtomicFile:
    """A temporary file beside ``out`` that becomes ``out`` on :meth:`commit`; :meth:`abort` leaves no trace."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.tmp = new_temporary(self.out)

    def commit(self) -> Path:
        """fsync the temporary file, rename it over OUT, fsync the folder."""
        with open(self.tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.out)
        fsync_dir(self.out.parent)
        return self.out

    def abort(self) -> None:
        """Delete the temporary file; OUT is left as it was."""
        self.tmp.unlink(missing_ok=True)


def output_mode(out: Path) -> int:
    """Permissions for the new OUT: those of the file it replaces, else 0666 less the umask.

    (mkstemp creates 0600 files, which would hide a shared cache from everyone else.)
    """
    try:
        return out.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(out: Path, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete temporary files a killed build left beside OUT (``.OUT.*.tmp``)."""
    removed = []
    skip = {Path(p) for p in keep}
    for candidate in out.parent.glob(f".{out.name}.*.tmp"):
        if candidate not in skip:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed

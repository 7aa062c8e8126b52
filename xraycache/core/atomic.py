"""Writing a file so that a reader, a crash or another user only ever sees the old file or the complete new one.

The new file is written inside a private folder beside OUT (``.OUT.<random>.tmp/``, mode 0700, owned by the
builder), made durable (fsync) and renamed over OUT (atomic on POSIX), then the folder is fsynced. Every
access goes through file descriptors of OUT's folder and of the private folder, never through a path
another user could change: in a shared folder without the sticky bit, another user may rename or replace
any entry of it (a temporary file, even the private folder), but cannot change what is inside a 0700 folder
the builder owns, and the descriptors keep pointing at the folders the build made. Every file the build
writes in place of another (the cache, the file that joins shards, a compacted copy) goes through
:class:`AtomicFile`; every other file the package writes (figures, the HTML report, exports, the sample's
images) through :func:`write_output`, so none is ever written through a link planted at its name.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from . import interrupts

INNER = "cache.tmp"  # the file inside the private folder
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


class AtomicFile:
    """A new file beside ``out`` that becomes ``out`` on :meth:`commit`; :meth:`abort` leaves no trace.

    ``tmp`` is the path to write it at (through this process's descriptor of the private folder, on
    Linux ``/proc/self/fd/N/cache.tmp``); :meth:`sibling` gives another file in the same folder.
    """

    def __init__(self, out: str | os.PathLike[str], durable: bool = True) -> None:
        self.out = Path(out)
        self.durable = durable  # False: renamed into place without fsync (many small files, e.g. the sample)
        self.mode = output_mode(self.out)
        self._parent = os.open(self.out.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent))
            self._folder = os.open(self.folder.name, DIRECTORY, dir_fd=self._parent)
            info = os.fstat(self._folder)
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise OSError(f"the temporary folder {self.folder} was replaced while being made")
            self.tmp = self.sibling(INNER)
        except BaseException:
            os.close(self._parent)
            raise

    def sibling(self, name: str) -> Path:
        """A new empty file ``name`` in the private folder (created exclusively, never through a link)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(name, flags, 0o600, dir_fd=self._folder)
        try:
            os.fchmod(fd, self.mode)
        finally:
            os.close(fd)
        proc = Path(f"/proc/self/fd/{self._folder}")
        return proc / name if proc.is_dir() else self.folder / name

    def replace_inner(self, name: str) -> None:
        """Rename the sibling ``name`` over the file being written (a compacted copy takes its place)."""
        os.replace(name, INNER, src_dir_fd=self._folder, dst_dir_fd=self._folder)

    def commit(self) -> Path:
        """fsync the new file, rename it over OUT, fsync OUT's folder, remove the private folder."""
        interrupts.check()  # a Ctrl-C whose KeyboardInterrupt was lost still stops the rename
        if self.durable:
            fd = os.open(INNER, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), dir_fd=self._folder)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(INNER, self.out.name, src_dir_fd=self._folder, dst_dir_fd=self._parent)
        if self.durable:
            fsync_dir(self.out.parent)
        self._remove_folder()
        return self.out

    def abort(self) -> None:
        """Delete the new file and the private folder; OUT is left as it was."""
        try:
            for name in os.listdir(self._folder):
                os.unlink(name, dir_fd=self._folder)
        except OSError:
            pass
        self._remove_folder()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        """Commit when the block ends normally, abort when it raises (or the commit does)."""
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()

    def _remove_folder(self) -> None:
        try:
            mine = os.fstat(self._folder)
            there = os.stat(self.folder.name, dir_fd=self._parent, follow_symlinks=False)
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):  # still ours at that name
                os.rmdir(self.folder.name, dir_fd=self._parent)
        except OSError:
            pass
        finally:
            os.close(self._folder)
            os.close(self._parent)


def write_output(out: str | os.PathLike[str], write: Callable[[Path], object], durable: bool = True) -> Path:
    """Create or replace the file ``out`` with what ``write(path)`` writes at the path it is given.

    The one way the package writes an output file: ``write`` fills a new file in a private folder beside
    OUT, which is then renamed over OUT. A symbolic link planted at OUT is replaced, never written through
    (another user of a shared folder cannot make a figure land in ``~/.ssh/authorized_keys``); a reader sees
    the old file or the complete new one; a failing ``write`` leaves OUT as it was. The mode is 0666 less
    the umask (or that of the user's own file it replaces). OSError when OUT's folder cannot take it.
    """
    with AtomicFile(out, durable=durable) as target:
        write(target.tmp)
    return Path(out)


def output_mode(out: Path) -> int:
    """Permissions for the new OUT: those of the file it replaces when the builder owns it, else 0666 less
    the umask (a 0666 OUT another user left in a shared folder is not copied)."""
    try:
        info = os.lstat(out)
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
        return info.st_mode & 0o777
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
    """Delete the temporaries a killed build left beside OUT (``.OUT.*.tmp``), only those this user owns;
    never through a symbolic link."""
    removed = []
    skip = {Path(p) for p in keep}
    uid = os.geteuid()
    for candidate in out.parent.glob(f".{out.name}.*.tmp"):
        try:
            info = candidate.lstat()
        except OSError:
            continue
        if candidate in skip or info.st_uid != uid:
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(candidate, ignore_errors=True)
        elif stat.S_ISREG(info.st_mode):
            candidate.unlink(missing_ok=True)
        else:
            continue
        removed.append(candidate)
    return removed

"""Crash safety, tested on real build processes: SIGKILL at several points, Ctrl-C, write errors.

A driver script runs the real ``xraycache build`` command with optional hooks: a marker file
and a long pause at a chosen point (so the test can SIGKILL the build exactly there), and a
slow decode (so Ctrl-C lands while workers are busy). Write errors run with dropped privileges
(a child that calls ``os.setuid``; root ignores permissions) and with RLIMIT_FSIZE or a tmpfs.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.conftest import radiograph, write_image
from tests.test_incremental import assert_same_cache
from xraycache import build

DRIVER = '''
"""Run `xraycache build` with test hooks (see tests/test_crash.py)."""
import os, sys, time
from pathlib import Path
import xraycache.builder.workers as workers
import xraycache.builder.rewrite as rewrite
import xraycache.builder.writer as writer
import xraycache.core.atomic as atomic

MARK = os.environ.get("XC_MARK")
PAUSE_AT = os.environ.get("XC_PAUSE_AT", "")
DELAY = float(os.environ.get("XC_DECODE_DELAY", "0"))

def pause(point):
    if point == PAUSE_AT:
        Path(MARK).write_text(str(os.getpid()))
        time.sleep(600)

_decode = workers.decode_task
def slow_decode(root, source, spec):
    time.sleep(DELAY)
    return _decode(root, source, spec)
if DELAY:
    workers.decode_task = slow_decode

_add = writer.CacheWriter.add
def add(self, image, source):
    _add(self, image, source)
    self._added = getattr(self, "_added", 0) + 1
    if MARK and not PAUSE_AT and not Path(MARK).exists():
        Path(MARK).write_text(str(os.getpid()))  # writing has started
    if self._added == 1:
        pause("decode")
writer.CacheWriter.add = add

_add_rows = writer.CacheWriter.add_rows
def add_rows(self, *args, **kwargs):
    _add_rows(self, *args, **kwargs)
    pause("copy")
writer.CacheWriter.add_rows = add_rows

_copy_rows = rewrite._copy_rows
def copy_rows(*args, **kwargs):
    pause("compact")
    return _copy_rows(*args, **kwargs)
rewrite._copy_rows = copy_rows

_replace = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".h5"):
        pause("replace")
    return _replace(src, dst, *args, **kwargs)
atomic.os.replace = replace

_fsync_dir = atomic.fsync_dir
def fsync_dir(path):
    pause("replaced")
    return _fsync_dir(path)
atomic.fsync_dir = fsync_dir

from xraycache.cli import app
app(prog_name="xraycache", args=sys.argv[1:])
'''

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switches to user nobody and chowns folders: needs root")
WAIT = 120.0  # generous bound for anything that should happen promptly (shared, slow CI machines)


@pytest.fixture
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "driver.py"
    path.write_text(DRIVER)
    path.parent.chmod(0o755)
    path.chmod(0o644)
    return path


def dataset(root: Path, n: int = 12, size: tuple[int, int] = (300, 260)) -> Path:
    """A Kaggle-layout dataset of ``n`` small seeded images under ``root/src``."""
    src = root / "src"
    for i in range(n):
        label = "NORMAL" if i % 3 == 0 else "PNEUMONIA"
        name = f"IM-{i:04d}-0001.jpeg" if label == "NORMAL" else f"person{i}_bacteria_{i}.jpeg"
        write_image(src / ("train" if i % 4 else "test") / label / name, radiograph(*size, seed=i))
    return src


def run_driver(driver: Path, args: list[str], env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(driver), "build", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"build ended before reaching the hook: {proc.communicate()}")
        assert time.monotonic() < deadline, "hook never reached"
        time.sleep(0.01)


def live_processes(session: int) -> list[str]:
    """Processes (not zombies) still in the build's session: the build and its workers."""
    out = subprocess.run(["ps", "-e", "-o", "sid=,stat=,pid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines()]
    return [" ".join(row) for row in rows if len(row) >= 3 and row[0] == str(session) and not row[1].startswith("Z")]


def assert_no_process_left(session: int) -> None:
    deadline = time.monotonic() + WAIT
    while live_processes(session):
        assert time.monotonic() < deadline, f"processes left behind: {live_processes(session)}"
        time.sleep(0.1)


def temporaries(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*.tmp"))


def snapshot(out: Path) -> tuple[int, int, bytes] | None:
    if not out.exists():
        return None
    stat = out.stat()
    return stat.st_ino, stat.st_mtime_ns, out.read_bytes()


# ---------------------------------------------------------------------------------------------- SIGKILL


@pytest.mark.parametrize(
    ("point", "incremental", "expect"),
    [
        ("decode", False, "old"),  # cold build, images streaming into the temporary file
        ("compact", False, "old"),  # cold build, copying into the compacted file (a file was skipped)
        ("replace", False, "old"),  # complete temporary file, just before the rename
        ("replaced", False, "new"),  # just after the rename, before the folder fsync
        ("decode", True, "old"),  # incremental, a changed file being written
        ("copy", True, "old"),  # incremental, unchanged images being copied
        ("replace", True, "old"),
    ],
)
def test_sigkill_leaves_old_or_new_complete_file(
    driver: Path, tmp_path: Path, point: str, incremental: bool, expect: str
) -> None:
    src = dataset(tmp_path)
    (src / "train/NORMAL/zz-broken.jpeg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "cache.h5"
    old_reference = tmp_path / "old.h5"
    if incremental:
        build(src, out, jobs=1)
        shutil.copy2(out, old_reference)
        # change the data: one new file early in the order, one changed, one deleted
        write_image(src / "train/NORMAL/IM-0000-0002.jpeg", radiograph(280, 250, seed=77))
        write_image(src / "train/PNEUMONIA/person1_bacteria_1.jpeg", radiograph(310, 240, seed=78))
        (src / "test/NORMAL/IM-0000-0001.jpeg").unlink()
    else:
        old_reference = None  # type: ignore[assignment]
    before = snapshot(out)
    mark = tmp_path / "mark"
    proc = run_driver(driver, [str(src), str(out), "-q", "-j", "2"], {"XC_MARK": str(mark), "XC_PAUSE_AT": point})
    wait_for(mark, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT)  # returns once the workers, which share its pipes, are gone too
    assert proc.returncode == -signal.SIGKILL
    assert_no_process_left(proc.pid)  # loky workers notice their parent is gone

    new_reference = build(src, tmp_path / "cold.h5", jobs=1).out
    if expect == "old":
        assert snapshot(out) == before  # byte for byte the old file (or still no file)
    else:
        assert_same_cache(out, Path(new_reference))
    # the next run cleans up after the killed one and completes
    result = subprocess.run([sys.executable, str(driver), "build", str(src), str(out), "-q"], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert temporaries(out) == []
    assert_same_cache(out, Path(new_reference))


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4, 0.8, 1.5])
def test_sigkill_at_any_moment(driver: Path, tmp_path: Path, delay: float) -> None:
    """Kill a real incremental build after a fixed delay, wherever it is: OUT is old or new, complete."""
    src = dataset(tmp_path, n=30, size=(900, 800))
    out = tmp_path / "cache.h5"
    build(src, out, jobs=1)
    old = tmp_path / "old.h5"
    shutil.copy2(out, old)
    for i in range(0, 30, 3):
        path = next(src.rglob(f"*{i:04d}-0001.jpeg"), None) or next(src.rglob(f"person{i}_*.jpeg"))
        write_image(path, radiograph(880, 810, seed=100 + i))
    proc = run_driver(driver, [str(src), str(out), "-q", "-j", "2"])
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT)
    assert_no_process_left(proc.pid)
    new = tmp_path / "new.h5"
    build(src, new, jobs=1)
    try:
        assert_same_cache(out, old)
    except AssertionError:
        assert_same_cache(out, new)
    build(src, out, jobs=1)
    assert temporaries(out) == []
    assert_same_cache(out, new)


# ---------------------------------------------------------------------------------------------- SIGINT


@pytest.mark.parametrize("whole_group", [True, False])
def test_ctrl_c_exits_130_promptly_without_workers_or_temporaries(
    driver: Path, tmp_path: Path, whole_group: bool
) -> None:
    """Ctrl-C in a terminal signals the whole process group (workers too); ``kill -INT`` only the build."""
    src = dataset(tmp_path, n=40)
    out = tmp_path / "cache.h5"
    mark = tmp_path / "mark"
    proc = run_driver(driver, [str(src), str(out), "-q", "-j", "2"], {"XC_MARK": str(mark), "XC_DECODE_DELAY": "0.3"})
    wait_for(mark, proc)  # the first image is written: workers are busy with the rest
    started = time.monotonic()
    if whole_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=WAIT)
    seconds = time.monotonic() - started
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == ["interrupted: nothing was written"], stderr
    assert seconds < 30, f"took {seconds:.1f} s to stop"
    assert_no_process_left(proc.pid)
    assert not out.exists()
    assert temporaries(out) == []
    print(f"stopped {seconds:.2f} s after SIGINT")


# ---------------------------------------------------------------------------------------------- write errors


# The interpreter may live where user nobody cannot read it (e.g. under /root/.pyenv), so the child
# starts as root, warms up (imports every xraycache module, and runs the same command once as a dry
# run, which loads what the CLI imports lazily), then drops to nobody before the real run.
AS_NOBODY = """
import contextlib, importlib, io, os, pkgutil, sys
import rich, typer, xraycache
for package in (xraycache, rich, typer):  # rich imports some modules lazily (e.g. _emoji_codes)
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.endswith("__main__"):
            continue  # importing it would run the command
        with contextlib.suppress(Exception):
            importlib.import_module(module.name)
import PIL.Image, PIL.JpegImagePlugin, PIL.PngImagePlugin
PIL.Image.init()
import multiprocessing.popen_fork  # the build forks its worker (one with -j 1) after the privileges drop
from xraycache.cli import app
with contextlib.suppress(BaseException), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    app(prog_name="xraycache", args=[*sys.argv[1:], "--dry-run", "-q"])
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
app(prog_name="xraycache", args=sys.argv[1:])
""".replace("NOBODY", str(NOBODY))


def run_cli(args: list[str], *, nobody: bool = False, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    """``xraycache ARGS`` in a child: as user nobody (root ignores permissions), or with a file size limit."""

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    command = [sys.executable, "-c", AS_NOBODY, *args] if nobody else [sys.executable, "-m", "xraycache", *args]
    env = {**os.environ, "HOME": "/tmp", "MPLCONFIGDIR": tempfile.gettempdir()}
    return subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=limit, timeout=WAIT * 2, cwd="/")


def make_world_readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@needs_root
def test_read_only_output_folder(world: Path) -> None:
    src = dataset(world)
    outdir = world / "out"
    outdir.mkdir()
    out = outdir / "cache.h5"
    build(src, out, jobs=1)
    write_image(src / "train/NORMAL/IM-0100-0001.jpeg", radiograph(200, 200, seed=5))  # something to do
    make_world_readable(world)  # readable, but only root may write in out/
    before = snapshot(out)
    result = run_cli(["build", str(src), str(out), "-q", "-j", "1"], nobody=True)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write") and "not writable" in lines[0], lines
    assert snapshot(out) == before
    assert temporaries(out) == []


@needs_root
def test_read_only_output_file_in_writable_folder_is_replaced_atomically(world: Path) -> None:
    """A read-only OUT in a folder the user may write is replaced (like mv): the folder decides."""
    src = dataset(world)
    outdir = world / "out"
    outdir.mkdir()
    make_world_readable(world)
    os.chown(outdir, NOBODY, NOBODY)
    out = outdir / "cache.h5"
    result = run_cli(["build", str(src), str(out), "-q", "-j", "1"], nobody=True)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_uid == NOBODY


def test_disk_full_via_file_size_limit(world: Path) -> None:
    src = dataset(world, n=30)
    out = world / "cache.h5"
    build(src, out, jobs=1, size=64)  # old: a small cache
    before = snapshot(out)
    result = run_cli(["build", str(src), str(out), "-q", "-j", "1", "--size", "256", "--overwrite"], fsize=600_000)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {out}: "), lines
    assert "File too large" in lines[0]
    assert snapshot(out) == before
    assert temporaries(out) == []


@pytest.fixture
def small_tmpfs(world: Path) -> Iterator[Path]:
    mount = world / "tmpfs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_on_a_small_tmpfs(world: Path, small_tmpfs: Path) -> None:
    src = dataset(world, n=30)
    out = small_tmpfs / "cache.h5"
    build(src, out, jobs=1, size=96)  # ~0.3 MB
    before = snapshot(out)
    for i in range(30, 60):
        write_image(src / "train/NORMAL" / f"IM-{i:04d}-0001.jpeg", radiograph(300, 260, seed=i))
    result = run_cli(["build", str(src), str(out), "-q", "-j", "1", "--size", "256", "--overwrite"])
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert snapshot(out) == before
    assert temporaries(out) == []


@pytest.mark.slow
@needs_root
def test_unreadable_old_cache_is_a_clear_error(world: Path) -> None:
    src = dataset(world)
    outdir = world / "out"
    outdir.mkdir()
    out = outdir / "cache.h5"
    build(src, out, jobs=1)
    make_world_readable(world)
    os.chown(outdir, NOBODY, NOBODY)
    out.chmod(0o600)  # root's file, in nobody's folder
    before = snapshot(out)
    result = run_cli(["build", str(src), str(out), "-q", "-j", "1"], nobody=True)
    assert result.returncode == 2, result
    assert "--overwrite" in result.stderr or "not readable" in result.stderr, result.stderr
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------- readers


def _read_and_check(path: str) -> int:
    """Read every split of a cache and check each image against its stored checksum (a reader process)."""
    from xraycache.core.pixels import pixel_checksum

    checked = 0
    with h5py.File(path, "r") as handle:
        for split in handle.attrs["splits"]:
            images, sums = handle[split]["images"][:], handle[split]["checksums"][:]
            for image, stored in zip(images, sums, strict=True):
                assert pixel_checksum(image) == bytes(stored)
                checked += 1
    return checked


def test_several_processes_read_one_file_at_once(tmp_path: Path) -> None:
    src = dataset(tmp_path, n=16)
    out = tmp_path / "cache.h5"
    build(src, out, jobs=1, size=64)
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        assert pool.map(_read_and_check, [str(out)] * 8) == [16] * 8


def test_reader_holding_out_open_during_a_rebuild_sees_the_old_file(tmp_path: Path) -> None:
    """A rebuild renames a new file over OUT: open handles keep reading the old, complete file (its
    inode lives on until closed); anything that opens OUT afterwards gets the new one; never a mix."""
    src = dataset(tmp_path, n=12)
    out = tmp_path / "cache.h5"
    build(src, out, jobs=1, size=64)
    with h5py.File(out, "r") as held:
        before = held["train/images"][:]
        write_image(src / "train/NORMAL/IM-0000-0000.jpeg", radiograph(300, 260, seed=99))  # sorts first
        report = build(src, out, jobs=1, size=64)
        assert report.mode == "incremental" and report.added == 1
        assert np.array_equal(held["train/images"][:], before)  # still the old file, all of it
        assert held["train/images"].shape[0] == before.shape[0]
        with h5py.File(out, "r") as fresh:
            assert fresh["train/images"].shape[0] == before.shape[0] + 1


def test_reader_module_holding_out_open_during_a_rebuild_sees_the_old_file(tmp_path: Path) -> None:
    reader = pytest.importorskip("xraycache.read.cache")
    src = dataset(tmp_path, n=12)
    out = tmp_path / "cache.h5"
    build(src, out, jobs=1, size=64)
    with reader.open(out) as cache:
        held_images = np.asarray(cache["train"].images)
        write_image(src / "train/NORMAL/IM-0000-0001b.jpeg", radiograph(280, 250, seed=98))
        build(src, out, jobs=1, size=64)
        assert np.array_equal(np.asarray(cache["train"].images), held_images)

"""Hostile source folders and shared output folders: builds never hang, blow up, or write through links.

The hostile-folder build runs in a child under a 4 GB address-space limit with a 60 s timeout, as user
nobody where the tests run as root (root reads every folder, so an unreadable one needs another user).
The output-folder cases play another user of a shared folder with user nobody (root only).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import radiograph, write_image
from PIL import Image

import xraycache
from tests.test_crash import AS_NOBODY, NOBODY, make_world_readable, needs_root

ADDRESS_SPACE = 4 << 30
GOOD = [f"train/NORMAL/IM-{i:04d}-0001.jpeg" for i in range(3)] + [
    f"train/PNEUMONIA/person{i}_bacteria_{i}.jpeg" for i in range(3)
]


def run_build(args: list[str], *, nobody: bool) -> subprocess.CompletedProcess[str]:
    """``xraycache build ARGS`` in a child under the address-space limit (as nobody when asked and root)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    as_nobody = nobody and os.geteuid() == 0
    command = (
        [sys.executable, "-c", AS_NOBODY, "build", *args]
        if as_nobody
        else [sys.executable, "-m", "xraycache", "build", *args]
    )
    env = {**os.environ, "HOME": "/tmp", "MPLCONFIGDIR": tempfile.gettempdir(), "COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=limit, timeout=60, cwd="/")


def skipped(out: Path) -> dict[str, str]:
    with h5py.File(out, "r") as handle:
        group = handle["skipped"]
        return dict(zip(group["path"].asstr()[:], group["reason"].asstr()[:], strict=True))


@pytest.fixture
def hostile_folder(world: Path) -> Path:
    src = world / "src"
    for i, rel in enumerate(GOOD):
        write_image(src / rel, radiograph(160, 140, seed=i))
    tall = np.zeros((60_000_000, 1), dtype=np.uint8)  # 116 KB as PNG, under the 64 MP limit
    Image.fromarray(tall).save(src / "train/PNEUMONIA/person7_virus_7.png")
    os.mkfifo(src / "train/NORMAL/fifo.jpeg")
    os.mkfifo(src / "train/NORMAL/IM0001")  # no suffix: would be sniffed for DICOM content
    (src / "train/NORMAL/zero.jpeg").symlink_to("/dev/zero")
    (src / "train/PNEUMONIA/random.jpeg").symlink_to("/dev/urandom")
    write_image(src / "test/NORMAL/IM-0100-0001.jpeg", radiograph(160, 140, seed=100))
    write_image(src / "test/PNEUMONIA/person8_bacteria_8.jpeg", radiograph(160, 140, seed=101))
    make_world_readable(world)
    (src / "test/NORMAL").chmod(0o000)
    return src


@pytest.mark.slow
def test_hostile_folder_builds_in_bounded_time_and_memory(hostile_folder: Path, world: Path) -> None:
    """FIFOs, device links and the 1 x 60,000,000 px PNG, decoded by two worker processes; then, as a user
    who cannot read ``test/NORMAL`` (nobody, when root runs the tests), the unreadable folder."""
    outdir = world / "out"
    outdir.mkdir()
    outdir.chmod(0o777)
    out = outdir / "c.h5"
    started = time.monotonic()
    result = run_build([str(hostile_folder), str(out), "-q", "-j", "2", "--size", "32"], nobody=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 60
    reasons = skipped(out)
    assert reasons["train/NORMAL/fifo.jpeg"] == "not a regular file: a FIFO (named pipe)"
    assert reasons["train/NORMAL/zero.jpeg"] == "not a regular file: a character device"
    assert reasons["train/PNEUMONIA/random.jpeg"] == "not a regular file: a character device"
    with xraycache.open(out) as cache:
        kept = {str(p) for name in cache.splits for p in cache[name].meta["path"]}
    good = {*GOOD, "train/PNEUMONIA/person7_virus_7.png", "test/PNEUMONIA/person8_bacteria_8.jpeg"}
    assert good <= kept and not kept & set(reasons)
    assert not list(outdir.glob(".c.h5*")), "no temporary or lock file is left behind"
    if os.geteuid() == 0:  # root reads every folder: the unreadable one needs another user (one worker)
        out = outdir / "nobody.h5"
        result = run_build([str(hostile_folder), str(out), "-q", "-j", "1", "--size", "32"], nobody=True)
        assert result.returncode == 0, result.stderr[-2000:]
    assert skipped(out)["test/NORMAL"] == "cannot read folder: Permission denied"
    strict = run_build(
        [str(hostile_folder), str(outdir / "s.h5"), "-q", "-j", "1", "--size", "32", "--strict"], nobody=True
    )
    assert strict.returncode == 1 and "test/NORMAL: cannot read folder" in strict.stderr, strict.stderr[-1500:]
    assert "fifo.jpeg: not a regular file" in strict.stderr and not (outdir / "s.h5").exists()


def _source(root: Path) -> Path:
    src = root / "src"
    for i, rel in enumerate(GOOD):
        write_image(src / rel, radiograph(120, 100, seed=i))
    return src


def test_no_lock_file_is_left_and_a_planted_lock_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path)
    out = tmp_path / "c.h5"
    xraycache.build(src, out, size=32, jobs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "src"]
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    lock = tmp_path / ".c.h5.lock"
    lock.symlink_to(victim)
    with pytest.raises(xraycache.InputError, match=r"\.c\.h5\.lock is a symbolic link"):
        xraycache.build(src, out, size=32, jobs=1, overwrite=True)
    assert victim.read_text() == "keep me"
    lock.unlink()
    os.mkfifo(lock)
    started = time.monotonic()
    with pytest.raises(xraycache.InputError, match="not a regular file"):
        xraycache.build(src, out, size=32, jobs=1, overwrite=True)
    assert time.monotonic() - started < 10


def test_output_mode_comes_from_the_umask_unless_the_builder_owns_out(tmp_path: Path) -> None:
    src = _source(tmp_path)
    out = tmp_path / "c.h5"
    out.write_bytes(b"")
    out.chmod(0o640)
    xraycache.build(src, out, size=32, jobs=1, overwrite=True)
    assert out.stat().st_mode & 0o777 == 0o640  # the builder's own file keeps its mode
    if os.geteuid() == 0:  # a 0666 file another user left is not copied
        os.chown(out, NOBODY, NOBODY)
        out.chmod(0o666)
        old_mask = os.umask(0o022)
        try:
            xraycache.build(src, out, size=32, jobs=1, overwrite=True)
        finally:
            os.umask(old_mask)
        assert out.stat().st_mode & 0o777 == 0o644 and out.stat().st_uid == 0


@needs_root
def test_a_lock_left_by_another_users_killed_build_does_not_block(world: Path) -> None:
    src = _source(world)
    make_world_readable(world)
    team = world / "team"
    team.mkdir()
    team.chmod(0o2777)  # a shared (setgid) team folder
    lock = team / ".c.h5.lock"
    lock.write_bytes(b"")
    lock.chmod(0o444)  # as the lock of a build of root's that was killed (SIGKILL cannot clean up)
    result = run_build([str(src), str(team / "c.h5"), "-q", "-j", "1", "--size", "32"], nobody=True)
    assert result.returncode == 0, result.stderr[-1500:]
    assert (team / "c.h5").stat().st_uid == NOBODY


SWAP_DRIVER = r"""
import os, sys, time
from pathlib import Path
import xraycache.builder.writer as writer
GO, READY = Path(os.environ["XC_GO"]), Path(os.environ["XC_READY"])
_add = writer.CacheWriter.add
def add(self, image, source):
    _add(self, image, source)
    if not READY.exists():
        READY.write_text(str(self.output.tmp))
        deadline = time.monotonic() + 60
        while not GO.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
writer.CacheWriter.add = add
import xraycache
xraycache.build(sys.argv[1], sys.argv[2], size=32, jobs=1)
print("built")
"""


@needs_root
def test_another_user_swapping_the_temporary_folder_cannot_redirect_the_write(world: Path) -> None:
    """In a folder without the sticky bit, user nobody renames the build's temporary folder away mid-build
    and plants a symlink to a folder of theirs holding a link to a file the builder owns: nothing is written
    through it, and OUT is the complete cache."""
    src = _source(world)
    (src / "train/NORMAL/broken.jpeg").write_bytes(b"not an image")  # skipped: the file is compacted at the end
    shared = world / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may rename or delete entries
    victim = world / "precious.h5"
    victim.write_bytes(b"the builder's own file")
    trap = world / "trap"
    trap.mkdir()
    (trap / "cache.tmp").symlink_to(victim)
    os.chown(trap, NOBODY, NOBODY)
    go, ready = world / "go", world / "ready"
    out = shared / "c.h5"
    env = {**os.environ, "XC_GO": str(go), "XC_READY": str(ready)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SWAP_DRIVER, str(src), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    [temporary] = [p for p in shared.iterdir() if p.name.startswith(".c.h5.") and p.name.endswith(".tmp")]
    attack = (
        "import os\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        f"os.rename({str(temporary)!r}, {str(shared / '.moved-away')!r})\n"
        f"os.symlink({str(trap)!r}, {str(temporary)!r})\n"
    )
    subprocess.run([sys.executable, "-c", attack], check=True, timeout=30)
    go.write_text("go")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "built" in stdout, stderr[-1500:]
    assert victim.read_bytes() == b"the builder's own file"
    with xraycache.open(out) as cache:
        assert len(cache["train"]) == len(GOOD) and [row.path for row in cache.skipped] == ["train/NORMAL/broken.jpeg"]


@pytest.mark.slow
def test_labels_csv_caps_and_labels_only_from_matched_rows(tmp_path: Path) -> None:
    src = _source(tmp_path)
    rows = ["path,label"] + [f"{rel},{'normal' if 'NORMAL' in rel else 'pneumonia'}" for rel in GOOD]
    rows += [f"missing/{i}.jpeg,label-{i}" for i in range(300_000)]  # rows that name no image
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "c.h5"
    report = xraycache.build(src, out, size=16, jobs=1, labels=csv)
    assert report.label_names == ["normal", "pneumonia"] and len(report.csv_rows_without_file) == 300_000
    assert out.stat().st_size < 2_000_000
    huge = tmp_path / "huge.csv"
    huge.write_text("path,label\n" + f"{GOOD[0]},{'x' * (2 << 20)}\n")
    with pytest.raises(xraycache.InputError, match=r"line 2: a cell is longer than 1,048,576 characters"):
        xraycache.build(src, tmp_path / "h.h5", size=16, jobs=1, labels=huge)
    long = tmp_path / "long.csv"
    long.write_text("path,label\n" + f"{GOOD[0]},{'y' * 200_000}\n")
    with pytest.raises(xraycache.InputError, match=r"a label of 200,000 characters, over the limit of 1,000"):
        xraycache.build(src, tmp_path / "l.h5", size=16, jobs=1, labels=long)
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(xraycache.InputError, match="not a regular file"):
        xraycache.build(src, tmp_path / "f.h5", size=16, jobs=1, labels=tmp_path / "fifo.csv")

"""Incremental rebuilds: reuse, touched vs changed files, equality with a cold build, settings, the lock."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import radiograph, write_image
from xraycache import build
from xraycache.builder.output import output_lock
from xraycache.cli import app
from xraycache.core.errors import InputError

# Attributes that legitimately differ between two builds of the same data.
VOLATILE_ATTRS = {"created", "command", "build_id"}


def datasets(path: Path) -> dict[str, Any]:
    """Every dataset of a cache file (name -> array) and its non-volatile root attributes."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as handle:
        for key, value in handle.attrs.items():
            if key not in VOLATILE_ATTRS:
                out[f"@{key}"] = value

        def visit(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset):
                out[name] = item.asstr()[()] if h5py.check_string_dtype(item.dtype) else item[()]

        handle.visititems(visit)
    return out


def assert_same_cache(a: Path, b: Path) -> None:
    """Same datasets (images, labels, meta, checksums, stats, skipped) and the same settings."""
    left, right = datasets(a), datasets(b)
    assert sorted(left) == sorted(right)
    for key in left:
        assert np.array_equal(np.asarray(left[key]), np.asarray(right[key])), key


def cold(src: Path, out: Path, **kwargs: Any) -> Path:
    build(src, out, jobs=1, overwrite=True, **kwargs)
    return out


def test_unchanged_rebuild_writes_nothing(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    first = build(kaggle, out, jobs=2)
    assert first.mode == "cold"
    before = out.stat()
    again = build(kaggle, out, jobs=2)
    assert again.mode == "unchanged"
    assert (again.reused, again.added, again.changed, again.removed) == (10, 0, 0, 0)
    assert again.images == 10
    after = out.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)


def test_add_change_touch_delete_equals_cold_build(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "inc.h5"
    build(kaggle, out, jobs=2)
    # added: two new files, one sorting first in its folder, one last
    write_image(kaggle / "train/NORMAL/AAA-new.jpeg", radiograph(200, 180, 101))
    write_image(kaggle / "test/PNEUMONIA/person99_virus_9.jpeg", radiograph(210, 190, 102))
    # changed: same name, other pixels (different size in bytes)
    write_image(kaggle / "train/NORMAL/IM-0115-0002.jpeg", radiograph(330, 270, 103))
    # changed, same size in bytes: flip one byte in the middle of the entropy-coded data
    victim = kaggle / "val/NORMAL/IM-0200-0001.jpeg"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    # touched: same bytes, new mtime
    touched = kaggle / "train/PNEUMONIA/person3_bacteria_10.jpeg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))
    # deleted
    (kaggle / "test/NORMAL/IM-0300-0001.jpeg").unlink()

    report = build(kaggle, out, jobs=2)
    assert report.mode == "incremental"
    assert (report.added, report.changed, report.removed, report.touched) == (2, 2, 1, 1)
    assert report.reused == 10 - 2 - 1  # 7 unchanged files, the touched one among them
    assert report.images == 11
    assert_same_cache(out, cold(kaggle, tmp_path / "cold.h5"))
    with h5py.File(out, "r") as handle:
        paths = list(handle["train/meta/path"].asstr()[:])
        mtimes = handle["train/meta/mtime_ns"][:]
    assert mtimes[paths.index("train/PNEUMONIA/person3_bacteria_10.jpeg")] == touched.stat().st_mtime_ns
    # and now it is up to date again
    assert build(kaggle, out, jobs=1).mode == "unchanged"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_incremental_with_skipped_files_equals_cold_build(kaggle: Path, tmp_path: Path, compression: str) -> None:
    (kaggle / "train/NORMAL/broken.jpeg").write_bytes(b"not an image at all")
    (kaggle / "val/PNEUMONIA/empty.jpeg").write_bytes(b"")
    out = tmp_path / "inc.h5"
    first = build(kaggle, out, jobs=1, compression=compression)  # type: ignore[arg-type]
    assert len(first.skipped) == 2
    before = out.stat().st_mtime_ns
    again = build(kaggle, out, jobs=1, compression=compression)  # type: ignore[arg-type]
    assert again.mode == "unchanged"
    assert [s["path"] for s in again.skipped] == ["train/NORMAL/broken.jpeg", "val/PNEUMONIA/empty.jpeg"]
    assert out.stat().st_mtime_ns == before
    # a skipped file that becomes readable is picked up
    write_image(kaggle / "val/PNEUMONIA/empty.jpeg", radiograph(100, 120, 7))
    third = build(kaggle, out, jobs=1, compression=compression)  # type: ignore[arg-type]
    assert third.mode == "incremental"
    assert third.added == 1 and third.images == 11 and len(third.skipped) == 1
    assert_same_cache(out, cold(kaggle, tmp_path / "cold.h5", compression=compression))


def test_many_blocks_are_copied_in_order(make_dataset: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"train/{'NORMAL' if i % 3 else 'PNEUMONIA'}/IM-{i:04d}-0001.jpeg": (64, 60) for i in range(40)}
    src = make_dataset(files)
    out = tmp_path / "inc.h5"
    build(src, out, jobs=1, size=32)
    monkeypatch.setattr("xraycache.builder.rewrite.COPY_BLOCK_BYTES", 3 * 32 * 32)  # runs of at most 3 images
    (src / "train/NORMAL/IM-0010-0001.jpeg").unlink()
    write_image(src / "train/PNEUMONIA/IM-0021-0001.jpeg", radiograph(70, 66, 99))
    report = build(src, out, jobs=1, size=32)
    assert (report.reused, report.changed, report.removed) == (38, 1, 1)
    assert_same_cache(out, cold(src, tmp_path / "cold.h5", size=32))


def test_other_settings_exit_2_naming_them(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    build(kaggle, out, jobs=1)
    with pytest.raises(InputError, match=r"size 256 -> 128.*fit 'stretch' -> 'pad'|fit.*size"):
        build(kaggle, out, jobs=1, size=128, fit="pad")
    result = CliRunner().invoke(app, ["build", str(kaggle), str(out), "--size", "128", "-q"])
    assert result.exit_code == 2
    assert "size 256 -> 128" in result.output and "--overwrite" in result.output
    forced = build(kaggle, out, jobs=1, size=128, overwrite=True)
    assert forced.mode == "cold"
    with h5py.File(out, "r") as handle:
        assert handle["train/images"].shape[1:] == (128, 128)


def test_other_source_folder_is_a_different_setting(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    build(kaggle, out, jobs=1)
    other = tmp_path / "copy"
    shutil.copytree(kaggle, other)
    with pytest.raises(InputError, match="source_root"):
        build(other, out, jobs=1)


def test_existing_file_that_is_not_a_cache_is_not_replaced(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "notes.h5"
    out.write_text("my notes")
    with pytest.raises(InputError, match=r"not a cache this build can update.*overwrite=True"):
        build(kaggle, out, jobs=1)
    assert out.read_text() == "my notes"
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.arange(3)
    with pytest.raises(InputError, match="not an xraycache cache"):
        build(kaggle, tmp_path / "other.h5", jobs=1)


def test_second_build_of_the_same_out_exits_2(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    with output_lock(out):
        with pytest.raises(InputError, match="another xraycache build is writing"):
            build(kaggle, out, jobs=1)
        result = CliRunner().invoke(app, ["build", str(kaggle), str(out), "-q"])
        assert result.exit_code == 2
    assert not out.exists()
    build(kaggle, out, jobs=1)  # the lock is gone with its holder


def test_output_keeps_readable_permissions(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    old_mask = os.umask(0o022)
    try:
        build(kaggle, out, jobs=1)
    finally:
        os.umask(old_mask)
    assert out.stat().st_mode & 0o777 == 0o644
    out.chmod(0o640)
    build(kaggle, out, jobs=1, overwrite=True)
    assert out.stat().st_mode & 0o777 == 0o640


def test_cli_summary_names_reused_added_changed_removed(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    runner = CliRunner()
    assert runner.invoke(app, ["build", str(kaggle), str(out), "-j", "1"]).exit_code == 0
    (kaggle / "val/NORMAL/IM-0200-0001.jpeg").unlink()
    result = runner.invoke(app, ["build", str(kaggle), str(out), "-j", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert '"mode": "incremental"' in result.output and '"removed": 1' in result.output
    result = runner.invoke(app, ["build", str(kaggle), str(out), "-j", "1"])
    assert result.exit_code == 0 and "up to date, nothing to do: " in result.output
    assert "already holds these 9 images" in " ".join(result.output.split())
    (kaggle / "train/NORMAL/IM-0115-0001.jpeg").unlink()
    result = runner.invoke(app, ["build", str(kaggle), str(out), "-j", "1"])
    assert "incremental: reused 8, added 0, changed 0" in " ".join(result.output.split())


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_small_slabs_and_flushes_write_the_same_cache(
    make_dataset: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    """Pixels written in slabs of 3 images and the other columns every 5 rows, between runs copied from an
    old cache, give the cache one default-sized buffer gives."""
    files = {
        f"{split}/{'NORMAL' if i % 3 else 'PNEUMONIA'}/IM-{i:04d}-0001.jpeg": (64, 60)
        for split in ("train", "test")
        for i in range(23)
    }
    src = make_dataset(files)
    out = tmp_path / "inc.h5"
    build(src, out, jobs=1, size=32, compression=compression)  # type: ignore[arg-type]
    for i in (2, 9, 10, 17):  # changed: decoded again between runs of copied images
        write_image(src / f"train/{'NORMAL' if i % 3 else 'PNEUMONIA'}/IM-{i:04d}-0001.jpeg", radiograph(70, 66, i))
    reference = cold(src, tmp_path / "cold.h5", size=32, compression=compression)
    monkeypatch.setattr("xraycache.builder.writer.SLAB_BYTES", 3 * 32 * 32)
    monkeypatch.setattr("xraycache.builder.writer.FLUSH_ROWS", 5)
    report = build(src, out, jobs=1, size=32, compression=compression)  # type: ignore[arg-type]
    assert (report.reused, report.changed) == (42, 4)
    assert_same_cache(out, reference)
    assert_same_cache(cold(src, tmp_path / "small.h5", size=32, compression=compression), reference)


def test_compressed_slabs_are_whole_chunks(make_dataset: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slab smaller than a chunk would have HDF5 read back, decompress and compress again the chunk it
    splits (3x the CPU of a 1024 px uint16 gzip build): compressed slabs are rounded up to whole chunks."""
    from xraycache.builder import writer

    files = {f"train/NORMAL/IM-{i:04d}-0001.jpeg": (40, 40) for i in range(21)}
    src = make_dataset(files)
    monkeypatch.setattr(writer, "SLAB_BYTES", 3 * 32 * 32)  # 3 images: less than a chunk of 8
    writes: list[tuple[int, int]] = []
    setitem = h5py.Dataset.__setitem__

    def spy(self: h5py.Dataset, key: Any, value: Any) -> None:
        if self.name.endswith("/images") and isinstance(key, slice):
            writes.append((key.start, key.stop))
        setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", spy)
    build(src, tmp_path / "c.h5", jobs=1, size=32, compression="gzip")
    assert writes and all(start % writer.COMPRESSED_CHUNK_IMAGES == 0 for start, _ in writes)
    assert [stop - start for start, stop in writes] == [8, 8, 5]

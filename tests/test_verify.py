"""``xraycache verify``: the file on its own (structure, checksums, statistics) and against its sources."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import radiograph, write_image
from xraycache import build
from xraycache.cli import app
from xraycache.core.errors import NotACacheError
from xraycache.verify import verify


@pytest.fixture
def built(kaggle: Path, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "c.h5"
    (kaggle / "train/NORMAL/broken.jpeg").write_bytes(b"nope")  # a skipped file is not "new"
    build(kaggle, out, jobs=1, size=32)
    return kaggle, out


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", *args])
    return result.exit_code, result.output


def test_fresh_cache_agrees(built: tuple[Path, Path]) -> None:
    src, out = built
    report = verify(out, src)
    assert report.ok and report.images == 10 and report.findings() == []
    code, output = run(str(out), str(src))
    assert code == 0 and "ok" in output and "10 images" in output


def test_changed_pixels_fail_their_checksum(built: tuple[Path, Path]) -> None:
    _, out = built
    with h5py.File(out, "r+") as handle:
        image = handle["train/images"][2]
        image[5, 5] ^= 0xFF
        handle["train/images"][2] = image
        path = handle["train/meta/path"].asstr()[2]
    report = verify(out)
    kinds = {(f.where, f.kind) for f in report.problems}
    assert (path, "checksum") in kinds
    assert ("train", "stats") in kinds  # the histogram no longer matches either
    code, output = run(str(out))
    assert code == 1 and "checksum" in output


def test_a_cache_of_format_2_is_checked_with_its_blake2b_checksums(built: tuple[Path, Path]) -> None:
    """Files written before CRC-32 store blake2b-128 digests: verify checks those by the file's version."""
    import hashlib
    import zlib

    _, out = built
    with h5py.File(out, "r+") as handle:
        assert handle.attrs["format_version"] >= 3  # CRC-32 since version 3
        images = handle["train/images"][:]
        stored = handle["train/checksums"][:]
        assert [bytes(s) for s in stored] == [b"%08x" % zlib.crc32(image.tobytes()) for image in images]
        for split in ("train", "test", "val"):
            if split not in handle:
                continue
            old = [hashlib.blake2b(i.tobytes(), digest_size=16).hexdigest() for i in handle[f"{split}/images"][:]]
            del handle[f"{split}/checksums"]
            handle[f"{split}/checksums"] = np.array(old, dtype="S32")
        handle.attrs["format_version"] = 2
    assert verify(out).ok
    with h5py.File(out, "r+") as handle:
        image = handle["train/images"][1]
        image[0, 0] ^= 1
        handle["train/images"][1] = image
        path = handle["train/meta/path"].asstr()[1]
    assert (path, "checksum") in {(f.where, f.kind) for f in verify(out).problems}


def test_row_count_mismatch_is_reported(built: tuple[Path, Path]) -> None:
    _, out = built
    with h5py.File(out, "r+") as handle:
        paths = handle["train/meta/path"].asstr()[:]
        del handle["train/meta/path"]
        handle["train/meta"].create_dataset("path", data=np.array(paths[:-1], dtype=object), dtype=h5py.string_dtype())
    report = verify(out)
    assert [(f.where, f.kind) for f in report.problems] == [("train", "count")]
    assert "meta/path has 5 rows, images 6" in report.problems[0].detail


def test_sources_missing_new_changed(built: tuple[Path, Path]) -> None:
    src, out = built
    (src / "val/NORMAL/IM-0200-0001.jpeg").unlink()
    write_image(src / "train/NORMAL/IM-0999-0001.jpeg", radiograph(100, 90, 5))
    victim = src / "test/PNEUMONIA/person50_bacteria_1.jpeg"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    touched = src / "train/NORMAL/IM-0115-0001.jpeg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes: agrees
    report = verify(out, src)
    assert report.missing == ["val/NORMAL/IM-0200-0001.jpeg"]
    assert report.new == ["train/NORMAL/IM-0999-0001.jpeg"]
    assert report.changed == ["test/PNEUMONIA/person50_bacteria_1.jpeg"]
    assert report.problems == []
    code, output = run(str(out), str(src), "--json")
    assert code == 1
    data_out = json.loads(output)
    assert data_out["ok"] is False and data_out["missing"] == ["val/NORMAL/IM-0200-0001.jpeg"]
    code, output = run(str(out), str(src))
    assert code == 1 and "difference(s)" in output
    assert all(kind in output for kind in ("missing", "new", "changed"))


def test_not_a_cache_is_a_one_line_error(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = built
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = np.arange(4)
    for path, message in (
        (text, "is not an HDF5 file"),
        (truncated, "truncated HDF5 file"),
        (other, "written by another tool"),
    ):
        with pytest.raises(NotACacheError, match=message):
            verify(path)
        code, output = run(str(path))
        assert code == 2
        assert len(output.strip().splitlines()) == 1 and message in output, output


def test_copy_of_cache_verifies_against_a_copy_of_sources(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Hashes, not paths or timestamps, decide: a copied dataset still agrees."""
    src, out = built
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert verify(out, copy).ok

"""The build end to end: contents, determinism across workers, bad files, strictness, atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import xraycache
from xraycache.core.errors import InputError, StrictError


def read(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every split's images, labels and provenance columns, with h5py only."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        for split in f.attrs["splits"]:
            group = f[split]
            out[split] = {"images": group["images"][:], "labels": group["labels"][:]}
            for name, column in group["meta"].items():
                out[split][name] = column.asstr()[:] if column.dtype.kind == "O" else column[:]
    return out


def test_build_writes_every_image_with_labels_and_provenance(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache.h5"
    report = xraycache.build(kaggle, out, size=64, jobs=1)
    assert report.images == 10 and not report.skipped
    assert report.counts == {
        "train": {"normal": 3, "pneumonia": 3},
        "val": {"normal": 1, "pneumonia": 1},
        "test": {"normal": 1, "pneumonia": 1},
    }
    data = read(out)
    train = data["train"]
    assert train["images"].shape == (6, 64, 64) and train["images"].dtype == np.uint8
    assert list(train["path"]) == sorted(train["path"])
    assert list(train["path"][:3]) == [
        "train/NORMAL/IM-0115-0001.jpeg",
        "train/NORMAL/IM-0115-0002.jpeg",
        "train/NORMAL/NORMAL2-IM-1427-0001.jpeg",
    ]
    assert list(train["labels"]) == [0, 0, 0, 1, 1, 1]
    assert list(train["patient"]) == ["IM-0115", "IM-0115", "NORMAL2-IM-1427", "person12", "person12", "person3"]
    assert list(train["width"][:2]) == [300, 320] and list(train["height"][:2]) == [240, 260]
    assert "RGB" in set(train["mode"]) and "L" in set(train["mode"])
    src_file = kaggle / "train/NORMAL/IM-0115-0001.jpeg"
    assert train["file_size"][0] == src_file.stat().st_size
    import hashlib

    assert train["file_hash"][0].decode() == hashlib.sha256(src_file.read_bytes()).hexdigest()
    first = train["images"][0].astype(np.float64)
    assert train["min"][0] == first.min() and train["max"][0] == first.max()
    assert abs(train["mean"][0] - first.mean()) < 1e-3 and abs(train["std"][0] - first.std()) < 1e-3
    with h5py.File(out, "r") as f:
        attrs = dict(f.attrs)
        assert attrs["format"] == "xraycache" and attrs["size"] == 64 and attrs["fit"] == "stretch"
        assert list(attrs["label_names"]) == ["normal", "pneumonia"]
        assert list(attrs["splits"]) == ["train", "val", "test"]
        for key in ("tool_version", "created", "filter", "imaging_backend", "source_root", "command", "libjpeg"):
            assert key in attrs
        hist = f["train/stats/hist"][:]
        assert hist.shape == (2, 256) and hist.sum() == 6 * 64 * 64
        normal = train["images"][train["labels"] == 0]
        assert np.array_equal(hist[0], np.bincount(normal.ravel(), minlength=256))


def test_jobs_one_and_two_give_identical_arrays(kaggle: Path, tmp_path: Path) -> None:
    one = xraycache.build(kaggle, tmp_path / "one.h5", size=48, jobs=1)
    two = xraycache.build(kaggle, tmp_path / "two.h5", size=48, jobs=2)
    assert one.counts == two.counts
    a, b = read(tmp_path / "one.h5"), read(tmp_path / "two.h5")
    for split in a:
        for column in ("images", "labels", "path", "file_hash"):
            assert np.array_equal(a[split][column], b[split][column]), (split, column)


@pytest.mark.parametrize("fit", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("filter", ["area", "box", "lanczos"])
def test_every_fit_and_filter_builds(kaggle: Path, tmp_path: Path, fit: str, filter: str) -> None:
    report = xraycache.build(kaggle, tmp_path / "c.h5", size=32, fit=fit, filter=filter, jobs=1)  # type: ignore[arg-type]
    assert report.images == 10
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f.attrs["fit"] == fit and f.attrs["filter"] == filter


def test_bad_files_are_skipped_and_recorded(kaggle: Path, tmp_path: Path) -> None:
    good = (kaggle / "train/NORMAL/IM-0115-0001.jpeg").read_bytes()
    (kaggle / "train/NORMAL/IM-0999-0001.jpeg").write_bytes(b"")
    (kaggle / "train/NORMAL/IM-0998-0001.jpeg").write_bytes(good[: len(good) // 2])
    (kaggle / "train/PNEUMONIA/person9_virus_9.jpeg").write_bytes(os.urandom(3000))
    (kaggle / "train/NORMAL/readme.txt").write_text("not an image")
    out = tmp_path / "cache.h5"
    report = xraycache.build(kaggle, out, size=32, jobs=2)
    assert report.images == 10
    reasons = {row["path"]: row["reason"] for row in report.skipped}
    assert set(reasons) == {
        "train/NORMAL/IM-0998-0001.jpeg",
        "train/NORMAL/IM-0999-0001.jpeg",
        "train/PNEUMONIA/person9_virus_9.jpeg",
    }
    assert reasons["train/NORMAL/IM-0999-0001.jpeg"] == "empty file"
    assert "truncated" in reasons["train/NORMAL/IM-0998-0001.jpeg"]
    assert report.ignored == ["train/NORMAL/readme.txt"]
    data = read(out)
    assert len(data["train"]["images"]) == 6  # exactly the good ones: no empty slots
    with h5py.File(out, "r") as f:
        assert sorted(f["skipped/path"].asstr()[:]) == sorted(reasons)
        assert set(f["skipped/reason"].asstr()[:]) == set(reasons.values())
        assert f["train/stats/count"][:].sum() == 6


def test_strict_fails_and_writes_nothing(kaggle: Path, tmp_path: Path) -> None:
    (kaggle / "train/NORMAL/IM-0999-0001.jpeg").write_bytes(b"junk")
    out = tmp_path / "cache.h5"
    with pytest.raises(StrictError, match=r"1 file\(s\) could not be taken: train/NORMAL/IM-0999-0001.jpeg"):
        xraycache.build(kaggle, out, size=32, jobs=1, strict=True)
    assert not out.exists()
    assert not list(tmp_path.glob(".cache.h5.*.tmp"))


def test_pixel_limit(kaggle: Path, tmp_path: Path) -> None:
    report = xraycache.build(kaggle, tmp_path / "c.h5", size=32, jobs=1, max_pixels=300 * 300)
    assert {row["path"] for row in report.skipped} == {"train/PNEUMONIA/person3_bacteria_10.jpeg"}
    assert "pixel limit" in report.skipped[0]["reason"]


def test_dry_run_decodes_and_writes_nothing(kaggle: Path, tmp_path: Path) -> None:
    report = xraycache.build(kaggle, tmp_path / "c.h5", dry_run=True)
    assert report.dry_run and report.images == 10
    assert not (tmp_path / "c.h5").exists()


def test_invalid_settings_are_input_errors(kaggle: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="size=2"):
        xraycache.build(kaggle, tmp_path / "c.h5", size=2)
    with pytest.raises(InputError, match="fit='squash'"):
        xraycache.build(kaggle, tmp_path / "c.h5", fit="squash")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="does not exist"):
        xraycache.build(kaggle, tmp_path / "missing" / "c.h5")


@pytest.mark.slow
def test_killed_build_leaves_no_output(tmp_path: Path, make_dataset: Callable[..., Path]) -> None:
    """SIGKILL part-way through: OUT never appears half-written."""
    files = {f"train/NORMAL/IM-{i:04d}-0001.jpeg": (900, 900) for i in range(150)}
    files.update({f"train/PNEUMONIA/person{i}_virus_{i}.jpeg": (900, 900) for i in range(150)})
    src = make_dataset(files)
    out = tmp_path / "cache.h5"
    code = f"import xraycache; xraycache.build({str(src)!r}, {str(out)!r}, jobs=1)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".cache.h5.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()


@pytest.mark.slow
def test_unseen_real_world_variants(tmp_path: Path) -> None:
    """Progressive JPEG, embedded ICC profile, RGB that is really gray, 140 to 4,100 px sides, no split folder."""
    from conftest import radiograph
    from PIL import Image

    src = tmp_path / "plain"
    src.mkdir()
    Image.fromarray(radiograph(600, 500, 1)).save(src / "progressive.jpg", progressive=True, quality=90)
    icc = b"\x00\x00\x02\x30lcms\x02\x10\x00\x00mntrGRAYXYZ " + bytes(range(256)) * 2  # an opaque APP2 blob
    Image.fromarray(radiograph(500, 400, 2)).convert("RGB").save(src / "icc.jpeg", icc_profile=icc)
    Image.fromarray(radiograph(140, 180, 3)).save(src / "tiny.JPG")
    Image.fromarray(radiograph(4100, 3000, 4)).save(src / "huge.jpeg", quality=80)
    Image.fromarray(radiograph(700, 700, 5)).save(src / "lossless.png")
    out = tmp_path / "plain.h5"
    report = xraycache.build(src, out, size=64, jobs=2)
    assert report.layout == "flat" and report.images == 5 and not report.skipped
    data = read(out)["all"]
    assert list(data["path"]) == ["huge.jpeg", "icc.jpeg", "lossless.png", "progressive.jpg", "tiny.JPG"]
    assert list(data["width"]) == [4100, 500, 700, 600, 140]
    assert set(data["mode"]) == {"L", "RGB"}
    assert all(image.std() > 5 for image in data["images"])  # real content, not blank
    # the gray-as-RGB file gives the same picture as its gray twin
    twin = tmp_path / "twin"
    twin.mkdir()
    Image.fromarray(radiograph(500, 400, 2)).save(twin / "icc.jpeg")
    xraycache.build(twin, tmp_path / "twin.h5", size=64, jobs=1)
    gray = read(tmp_path / "twin.h5")["all"]["images"][0].astype(int)
    assert np.abs(gray - data["images"][1].astype(int)).mean() < 2.0

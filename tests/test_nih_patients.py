"""NIH ChestX-ray14 names carry the patient (00001315_006.png: patient 00001315, follow-up 6), and the
rule came with cache format 2: a rebuild of an older cache asks for --overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from conftest import radiograph, write_image

import xraycache
from xraycache.core.schema import FORMAT_VERSION


def _nih_folder(root: Path) -> Path:
    """12 patients with 1-4 follow-ups each, NIH names, in one class folder."""
    src = root / "nih"
    index = 0
    for patient in range(1, 13):
        for follow_up in range(1 + patient % 4):
            name = f"{1300 + patient:08d}_{follow_up:03d}.png"
            write_image(src / "images" / name, radiograph(32, 32, index), fmt="PNG")
            index += 1
    return src


def test_resplit_keeps_an_nih_patient_in_one_split(tmp_path: Path) -> None:
    out = tmp_path / "nih.h5"
    xraycache.build(_nih_folder(tmp_path), out, size=16, jobs=1, resplit="0.5,0.25,0.25", seed=3)
    with xraycache.open(out) as cache:
        leaks = cache.leakage()
        patients = {str(p) for name in cache.splits for p in cache[name].meta["patient"]}
        assert len(cache.splits) >= 2
    assert leaks.images_without_patient == 0 and leaks.patients == 12
    assert leaks.patients_in_several_splits == []
    assert "00001304" in patients and all(len(p) == 8 and p.isdigit() for p in patients)


def test_rebuild_of_an_older_format_asks_for_overwrite(kaggle: Path, tmp_path: Path) -> None:
    assert FORMAT_VERSION >= 2
    out = tmp_path / "c.h5"
    xraycache.build(kaggle, out, size=16, jobs=1)
    with h5py.File(out, "r+") as f:
        f.attrs["format_version"] = 1  # as written before patient ids came from NIH names
    for extra in ([], ["--dry-run"]):
        result = subprocess.run(
            [sys.executable, "-m", "xraycache", "build", str(kaggle), str(out), "--size", "16", "-j", "1", *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "cache format 1" in result.stderr and "--overwrite" in result.stderr
    with xraycache.open(out) as cache:  # still readable as it is
        assert len(cache["train"]) == 6
    report = xraycache.build(kaggle, out, size=16, jobs=1, overwrite=True)
    assert report.mode == "cold"
    with xraycache.open(out) as cache:
        assert cache.attrs["format_version"] == FORMAT_VERSION


def test_rebuild_of_a_cache_with_no_format_version_asks_for_overwrite(kaggle: Path, tmp_path: Path) -> None:
    """No recorded version is the oldest format: its checksums are not copied into a newer file."""
    out = tmp_path / "c.h5"
    xraycache.build(kaggle, out, size=16, jobs=1)
    with h5py.File(out, "r+") as f:
        del f.attrs["format_version"]
    with pytest.raises(xraycache.InputError, match=r"cache format 0.*overwrite=True"):
        xraycache.build(kaggle, out, size=16, jobs=1)

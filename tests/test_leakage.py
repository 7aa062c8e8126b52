"""The leakage report: patients in several splits, identical files within and across splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import radiograph, write_image
from typer.testing import CliRunner

import xraycache
from xraycache.analysis.leakage import LeakageReport
from xraycache.cli import app
from xraycache.read.cache import Cache


def leakage(cache: Cache) -> LeakageReport:
    return cache.leakage()


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"


def leaky(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_image(src / "train/PNEUMONIA/person1_bacteria_1.jpeg", radiograph(40, 40, 1))
    write_image(src / "test/PNEUMONIA/person1_virus_2.jpeg", radiograph(40, 40, 2))  # same patient, other split
    write_image(src / "train/NORMAL/IM-0001-0001.jpeg", radiograph(40, 40, 3))
    shutil.copy(src / "train/NORMAL/IM-0001-0001.jpeg", src / "train/NORMAL/IM-0002-0001.jpeg")  # copy, same split
    write_image(src / "val/NORMAL/IM-0003-0001.jpeg", radiograph(40, 40, 4))
    (src / "test/NORMAL").mkdir()
    shutil.copy(src / "val/NORMAL/IM-0003-0001.jpeg", src / "test/NORMAL/IM-0004-0001.jpeg")  # copy, other split
    return src


def test_report_finds_patients_and_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    xraycache.build(leaky(tmp_path), out, size=16, jobs=1)
    with xraycache.open(out) as cache:
        report = leakage(cache)
    assert [(p.patient, p.splits) for p in report.patients_in_several_splits] == [("person1", {"train": 1, "test": 1})]
    assert [sorted(g.images) for g in report.duplicates_within] == [
        [("train", "train/NORMAL/IM-0001-0001.jpeg"), ("train", "train/NORMAL/IM-0002-0001.jpeg")]
    ]
    assert [sorted(g.images) for g in report.duplicates_across] == [
        [("test", "test/NORMAL/IM-0004-0001.jpeg"), ("val", "val/NORMAL/IM-0003-0001.jpeg")]
    ]
    assert report.images == 6 and report.patients == 5 and not report.clean


def test_resplit_removes_patient_leakage(tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    xraycache.build(leaky(tmp_path), out, size=16, jobs=1, resplit="0.5,0.25,0.25")
    with xraycache.open(out) as cache:
        assert leakage(cache).patients_in_several_splits == []


def test_cli_stats_and_info_print_the_report(tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    xraycache.build(leaky(tmp_path), out, size=16, jobs=1)
    runner = CliRunner()
    result = runner.invoke(app, ["show", "stats", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps at its own width
    assert "leakage: 1 of 5 patients in more than one split" in text
    assert "1 duplicate group(s) across splits, 1 within a split" in text
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "person1" in info.output and "IM-0004-0001.jpeg" in info.output
    data = json.loads(runner.invoke(app, ["show", "stats", str(out), "--json"]).output)
    assert data["leakage"]["duplicate_groups_across_splits"] == 1
    assert data["leakage"]["patients_in_several_splits"][0]["patient"] == "person1"


@pytest.mark.skipif(not REAL.is_dir(), reason="the real Kaggle sample (../shared/data/chest_xray) is not here")
def test_real_sample_byte_identical_pair_is_found(tmp_path: Path) -> None:
    out = tmp_path / "real.h5"
    xraycache.build(REAL, out, size=16, jobs=2)
    with xraycache.open(out) as cache:
        report = leakage(cache)
    names = [sorted(Path(p).name for _, p in group.images) for group in report.duplicates]
    assert ["person1430_bacteria_3695.jpeg", "person1430_bacteria_3696.jpeg"] in names

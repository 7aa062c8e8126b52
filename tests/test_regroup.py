"""Regrouping by near-duplicates against cold builds: folds on incremental rebuilds, non-UTF-8 names, dry runs after
--resplit moves, and a split emptied by --drop-duplicates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from test_near_duplicates import altered, chest, write
from typer.testing import CliRunner

import xraycache
from xraycache.builder.splits import assign_fold
from xraycache.cli import app

runner = CliRunner()


def chain(src: Path) -> None:
    """A in train, B (a 5% crop of A) in val, C (a crop of B) in test, three patients; plus singles."""
    a = chest(1)
    write(src / "train/NORMAL/IM-0001-0001.jpeg", a)
    b = altered(a, "crop5")
    write(src / "val/NORMAL/IM-0002-0001.jpeg", b)
    write(src / "test/NORMAL/IM-0003-0001.jpeg", altered(np.asarray(b.convert("L")), "crop5"))
    for i in range(5):
        write(src / "train/NORMAL" / f"IM-01{i:02d}-0001.jpeg", chest(50 + i))
        write(src / "train/PNEUMONIA" / f"person{i}_bacteria_{i}.jpeg", chest(80 + i))
    write(src / "val/PNEUMONIA/person90_bacteria_1.jpeg", chest(90))
    write(src / "test/PNEUMONIA/person91_bacteria_1.jpeg", chest(91))


def folds_of(path: Path) -> dict[str, int]:
    with xraycache.open(path) as cache:
        return {
            str(p): int(f)
            for s in cache.splits
            for p, f in zip(cache[s].meta["path"], cache[s].meta["fold"], strict=True)
        }


# fixed on review: "review 1: reused rows keep the fold the old regrouping gave them")
def test_incremental_folds_equal_a_cold_build(tmp_path: Path) -> None:
    src = tmp_path / "src"
    chain(src)
    seed = next(s for s in range(20) if assign_fold("patient:IM-0001", 3, s) != assign_fold("patient:IM-0002", 3, s))
    args = ["--size", "64", "--folds", "3", "--seed", str(seed), "-q"]
    assert runner.invoke(app, ["build", str(src), str(tmp_path / "inc.h5"), *args]).exit_code == 0
    (src / "train/NORMAL/IM-0001-0001.jpeg").unlink()  # B is no longer anyone's copy
    (src / "test/NORMAL/IM-0003-0001.jpeg").unlink()
    assert runner.invoke(app, ["build", str(src), str(tmp_path / "inc.h5"), *args]).exit_code == 0
    assert runner.invoke(app, ["build", str(src), str(tmp_path / "cold.h5"), *args]).exit_code == 0
    assert folds_of(tmp_path / "inc.h5") == folds_of(tmp_path / "cold.h5")


# fixed on review: "review 2: _gather indexes h5py with rows out of increasing order")
def test_regrouping_with_a_non_utf8_file_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    chain(src)
    write(src / "train/NORMAL/a.jpeg", chest(500))
    write(Path(os.fsdecode(os.fsencode(src / "train/NORMAL") + b"/\xff.jpeg")), chest(501))
    result = runner.invoke(app, ["build", str(src), str(tmp_path / "u.h5"), "--size", "64", "--drop-duplicates"])
    assert result.exit_code == 0, result.output


# fixed on review: "review 3: the dry run plans without movable=True")
def test_dry_run_after_resplit_moves_says_up_to_date(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "r.h5"
    chain(src)
    args = ["build", str(src), str(out), "--size", "64", "--resplit", "0.4,0.3,0.3", "--seed", "0"]
    first = runner.invoke(app, [*args, "--json"])
    assert json.loads(first.stdout)["moved_duplicates"] > 0
    assert json.loads(runner.invoke(app, [*args, "--json"]).stdout)["mode"] == "unchanged"
    assert json.loads(runner.invoke(app, [*args, "--dry-run", "--json"]).stdout)["would"] == "unchanged"


def test_report_of_a_cache_whose_split_was_emptied(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "d.h5"
    picture = chest(7)
    for i, kind in enumerate(("jpeg60", "half", "bright+", "crop5")):  # every image is one radiograph
        split = ("train", "test")[i % 2]
        write(src / split / "NORMAL" / f"IM-{i:04d}-0001.jpeg", altered(picture, kind))
    built = runner.invoke(app, ["build", str(src), str(out), "--size", "64", "--drop-duplicates", "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["warnings"] == [
        "split(s) train hold no image after near-duplicates were dropped: every image there copied one elsewhere"
    ]
    with xraycache.open(out) as cache:
        assert len(cache["train"]) == 0  # "test/..." sorts first: the training images are the ones dropped
    page = tmp_path / "r.html"
    result = runner.invoke(app, ["show", "report", str(out), "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert "Random images (test)" in page.read_text()
    png = runner.invoke(app, ["show", "report", str(out), "--out", str(tmp_path / "r.png")])
    assert png.exit_code == 0, png.output
    grid = runner.invoke(app, ["show", "grid", str(out), "--out", str(tmp_path / "g.png")])
    assert grid.exit_code == 0, grid.output  # the first split with images

"""--resplit and --folds: grouped by patient, stratified in expectation, deterministic and stable."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import radiograph, write_image

import xraycache
from xraycache.builder.prepare import prepare
from xraycache.builder.scan import ScanResult, SourceFile
from xraycache.core.options import SourceOptions, parse_fractions


def synthetic(n_patients: int, start: int = 0, images_per_patient: int = 3) -> list[SourceFile]:
    """Kaggle-like files: ~1/3 normal patients, each with several images spread over the original splits."""
    files = []
    for p in range(start, start + n_patients):
        label = 0 if p % 3 == 0 else 1
        for k in range(images_per_patient):
            split = ("train", "val", "test")[(p + k) % 3]  # the original split leaks patients on purpose
            files.append(SourceFile(f"{split}/C{label}/person{p}_{k}.jpeg", split, label, f"person{p}"))
    return files


def scan_result(files: list[SourceFile]) -> ScanResult:
    return ScanResult(Path("/nowhere"), "kaggle", ("normal", "pneumonia"), sorted(files, key=lambda f: f.path))


def resplit(files: list[SourceFile], spec: str = "0.8,0.1,0.1", seed: int = 0, folds: int = 0) -> list[SourceFile]:
    return prepare(scan_result(files), SourceOptions(resplit=spec, seed=seed, folds=folds)).found.files


def test_no_patient_in_two_splits_and_original_split_kept() -> None:
    files = resplit(synthetic(900))
    by_patient: dict[str, set[str]] = defaultdict(set)
    for f in files:
        by_patient[f.patient].add(f.split)
    assert all(len(splits) == 1 for splits in by_patient.values())
    assert {f.source_split for f in files} == {"train", "val", "test"}
    assert {f.split for f in files} == {"train", "val", "test"}


def test_fractions_hold_per_class() -> None:
    files = resplit(synthetic(6000, images_per_patient=1))
    for label in (0, 1):
        counts = Counter(f.split for f in files if f.label == label)
        total = sum(counts.values())
        for split, target in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            assert abs(counts[split] / total - target) < 0.025, (label, split, counts)


def test_deterministic_and_seed_dependent() -> None:
    files = synthetic(300)
    once = {f.path: f.split for f in resplit(files, seed=7)}
    assert once == {f.path: f.split for f in resplit(list(reversed(files)), seed=7)}
    other = {f.path: f.split for f in resplit(files, seed=8)}
    assert sum(once[p] != other[p] for p in once) > len(once) // 10


def test_adding_files_never_moves_a_patient() -> None:
    before = {f.path: f.split for f in resplit(synthetic(500))}
    grown = synthetic(500) + synthetic(200, start=500)  # new patients
    grown += [SourceFile(f"train/C1/person{p}_extra.jpeg", "train", 1, f"person{p}") for p in range(0, 500, 7)]
    after = {f.path: f.split for f in resplit(grown)}
    assert all(after[path] == split for path, split in before.items())
    extra = {f.path: f.patient for f in grown if "extra" in f.path}
    first = {f.patient: f.split for f in resplit(synthetic(500))}
    assert all(after[path] == first[patient] for path, patient in extra.items())


def test_folds_are_grouped_and_balanced() -> None:
    files = resplit(synthetic(2000), folds=5)
    folds_of: dict[str, set[int]] = defaultdict(set)
    for f in files:
        folds_of[f.patient].add(f.fold)
    assert all(len(v) == 1 for v in folds_of.values())
    counts = Counter(next(iter(v)) for v in folds_of.values())
    assert set(counts) == {0, 1, 2, 3, 4} and min(counts.values()) > 0.8 * 2000 / 5


def test_files_without_patient_are_their_own_group() -> None:
    files = [SourceFile(f"all/x/{i}.png", "all", 0, "") for i in range(1000)]
    counts = Counter(f.split for f in resplit(files, "0.5,0.5"))
    assert set(counts) == {"train", "test"} and 400 < counts["train"] < 600


@pytest.mark.parametrize("bad", ["0.8,0.1", "1", "0.5,0.5,0.5", "a,b,c", "-0.1,0.6,0.5"])
def test_bad_fractions(bad: str) -> None:
    with pytest.raises(xraycache.InputError, match="resplit="):
        parse_fractions(bad)


def test_build_with_resplit_and_folds(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(24):
        split = ("train", "val", "test")[i % 3]
        folder = "PNEUMONIA" if i % 2 else "NORMAL"
        name = f"person{i // 2}_bacteria_{i}.jpeg" if i % 2 else f"IM-{i // 2:04d}-{i:04d}.jpeg"
        write_image(src / split / folder / name, radiograph(40, 40, i))
    out = tmp_path / "r.h5"
    report = xraycache.build(src, out, size=16, jobs=1, resplit="0.6,0.2,0.2", seed=3, folds=3)
    assert sum(sum(c.values()) for c in report.counts.values()) == 24
    with xraycache.open(out) as cache:
        assert cache.attrs["resplit"] == "0.6,0.2,0.2" and cache.attrs["seed"] == 3 and cache.attrs["folds"] == 3
        seen: dict[str, str] = {}
        for name in cache.splits:
            split = cache[name]
            assert set(split.meta["fold"]) <= {0, 1, 2}
            assert set(split.meta["source_split"]) <= {"train", "val", "test"}
            for patient in split.meta["patient"]:
                assert seen.setdefault(patient, name) == name
    assert xraycache.build(src, out, size=16, jobs=1, resplit="0.6,0.2,0.2", seed=3, folds=3).mode == "unchanged"
    with pytest.raises(xraycache.InputError, match="seed 3 -> 4"):
        xraycache.build(src, out, size=16, jobs=1, resplit="0.6,0.2,0.2", seed=4, folds=3)

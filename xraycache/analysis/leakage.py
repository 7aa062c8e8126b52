"""Leakage between splits: patients in more than one split, byte-identical files and near-duplicates.

A model evaluated on a patient it was trained on, or on a copy of a training image, scores too well.
Patients and identical files are found from per-image columns (``patient``, ``file_hash`` = sha256 of
the source file, ``path``), here given split by split as any mapping of arrays, e.g.
``{name: cache[name].meta for name in cache}``; near-duplicates (the same exposure re-encoded, resized,
brightened or cropped a little) from the stored 32 px descriptors, verified on the stored pixels of the
few pairs they suggest (``near_duplicates.py``). Images without a patient id are not grouped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .near_duplicates import THRESHOLD, PixelSource, TooManyPairs, find_pairs, groups, joined


def search_refused(images: int, max_images: int | None) -> str:
    """Why the near-duplicates among ``images`` images are not searched with a bound of ``max_images`` (None:
    no bound), or "" when they are."""
    if max_images is None or images <= max_images:
        return ""
    return (
        f"{images:,} images, more than the {max_images:,} this command compares (the search grows with the "
        f"square of the count): `xraycache duplicates --max-images {images}` searches them all"
    )


@dataclass
class PatientLeak:
    """A patient with images in more than one split: images per split."""

    patient: str
    splits: dict[str, int]


@dataclass
class DuplicateGroup:
    """Files with the same content hash: (split, path) of each, and whether they span splits."""

    file_hash: str
    images: list[tuple[str, str]]
    across_splits: bool


@dataclass
class NearDuplicate:
    """Two images that show the same exposure (not byte-identical files): (split, path) of each and the
    verified similarity (1 = the same pixels; near-duplicates score >= the threshold)."""

    a: tuple[str, str]
    b: tuple[str, str]
    score: float

    @property
    def across_splits(self) -> bool:
        return self.a[0] != self.b[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": {"split": self.a[0], "path": self.a[1]},
            "b": {"split": self.b[0], "path": self.b[1]},
            "score": round(self.score, 4),
        }


@dataclass
class LeakageReport:
    """Everything ``show stats`` and ``info`` print under "leakage"."""

    images: int
    patients: int  # distinct non-empty patient ids
    images_without_patient: int
    patients_in_several_splits: list[PatientLeak] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    near_duplicate_groups: list[list[tuple[str, str]]] = field(default_factory=list)  # with identical files
    near_duplicates_unavailable: str = ""  # why they were not searched (a cache built before descriptors)
    threshold: float = THRESHOLD

    @property
    def duplicates_across(self) -> list[DuplicateGroup]:
        return [d for d in self.duplicates if d.across_splits]

    @property
    def duplicates_within(self) -> list[DuplicateGroup]:
        return [d for d in self.duplicates if not d.across_splits]

    @property
    def near_duplicates_across(self) -> list[NearDuplicate]:
        return [d for d in self.near_duplicates if d.across_splits]

    @property
    def clean(self) -> bool:
        """Nothing found at all: no leakage and no duplicate inside a split either."""
        return not self.patients_in_several_splits and not self.duplicates and not self.near_duplicates

    @property
    def leaks(self) -> bool:
        """Something crosses splits: a patient, an identical file or a near-duplicate pair (the leakage a
        model's evaluation suffers from; duplicates inside one split are not)."""
        return bool(self.patients_in_several_splits or self.duplicates_across or self.near_duplicates_across)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the counts."""
        data = asdict(self)
        data["duplicate_groups_across_splits"] = len(self.duplicates_across)
        data["duplicate_groups_within_splits"] = len(self.duplicates_within)
        data["near_duplicates"] = [pair.to_dict() for pair in self.near_duplicates]
        data["near_duplicate_groups"] = [
            [{"split": split, "path": path} for split, path in group] for group in self.near_duplicate_groups
        ]
        data["near_duplicate_pairs_across_splits"] = len(self.near_duplicates_across)
        return data


def leakage(
    splits: Mapping[str, Mapping[str, np.ndarray]],
    descriptors: Mapping[str, np.ndarray] | None = None,
    *,
    unavailable: str = "",
    threshold: float = THRESHOLD,
    pixels: Mapping[str, PixelSource] | None = None,
    max_checked: int | None = None,
) -> LeakageReport:
    """Patients in several splits, duplicate files (same sha256) and near-duplicate images, within and
    across splits.

    ``splits`` maps each split name to its ``patient``, ``file_hash`` and ``path`` columns; ``descriptors``
    each split name to its (N, 32, 32) descriptors and ``pixels`` to a reader of its stored images (sorted
    rows in, (K, H, W) out), which verifies the pairs the descriptors suggest (without both, ``unavailable``
    says why near-duplicates were not searched). With more than ``max_checked`` pairs to verify, they are
    not searched, and the report says so.
    """
    by_patient: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    images = without = 0
    for name, columns in splits.items():
        patients = columns["patient"]
        hashes = columns["file_hash"]
        paths = columns["path"]
        images += len(paths)
        for patient, digest, path in zip(patients.tolist(), hashes.tolist(), paths.tolist(), strict=True):
            if patient:
                by_patient[patient][name] += 1
            else:
                without += 1
            # a damaged column may hold any bytes: kept distinct, never an error
            key = digest.decode("ascii", "backslashreplace") if isinstance(digest, bytes) else str(digest)
            if key:
                by_hash[key].append((name, path))
    leaks = [PatientLeak(p, dict(s)) for p, s in sorted(by_patient.items()) if len(s) > 1]
    duplicates = [
        DuplicateGroup(digest, members, len({split for split, _ in members}) > 1)
        for digest, members in sorted(by_hash.items(), key=lambda item: item[1])
        if len(members) > 1
    ]
    report = LeakageReport(images, len(by_patient), without, leaks, duplicates, threshold=threshold)
    if descriptors is None or pixels is None:
        report.near_duplicates_unavailable = (
            unavailable or f"no {'descriptors' if descriptors is None else 'pixels'} given"
        )
        return report
    try:
        _near_duplicates(report, splits, descriptors, pixels, threshold, max_checked)
    except TooManyPairs as exc:
        report.near_duplicates_unavailable = f"not searched: {exc}"
    return report


def _near_duplicates(
    report: LeakageReport,
    splits: Mapping[str, Mapping[str, np.ndarray]],
    descriptors: Mapping[str, np.ndarray],
    pixels: Mapping[str, PixelSource],
    threshold: float,
    max_checked: int | None,
) -> None:
    """Fill the near-duplicate pairs (identical files left to ``duplicates``) and groups of ``report``."""
    names = list(splits)
    where = [(name, str(path)) for name in names for path in splits[name]["path"].tolist()]
    hashes = [h for name in names for h in splits[name]["file_hash"].tolist()]
    stacked = [np.asarray(descriptors[name]) for name in names]
    if not where:
        return
    source = joined([pixels[name] for name in names], stacked)
    pairs = find_pairs(np.concatenate(stacked), threshold, pixels=source, max_checked=max_checked)
    found = []
    for a, b, score in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist(), strict=True):
        if hashes[a] and hashes[a] == hashes[b]:
            continue
        found.append(NearDuplicate(where[a], where[b], float(score)))
    report.near_duplicates = sorted(found, key=lambda d: (not d.across_splits, -d.score, d.a, d.b))
    report.near_duplicate_groups = [[where[i] for i in members] for members in groups(len(where), pairs)]

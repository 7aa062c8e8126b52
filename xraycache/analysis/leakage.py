"""Leakage between splits: patients in more than one split, and byte-identical images.

A model evaluated on a patient it was trained on, or on a copy of a training image, scores too well.
Both are found from per-image columns (``patient``, ``file_hash`` = sha256 of the source file, ``path``),
here given split by split as any mapping of arrays, e.g. ``{name: cache[name].meta for name in cache}``:
the report costs no pass over the pixels. Images without a patient id are not grouped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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
class LeakageReport:
    """Everything ``show stats`` and ``info`` print under "leakage"."""

    images: int
    patients: int  # distinct non-empty patient ids
    images_without_patient: int
    patients_in_several_splits: list[PatientLeak] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)

    @property
    def duplicates_across(self) -> list[DuplicateGroup]:
        return [d for d in self.duplicates if d.across_splits]

    @property
    def duplicates_within(self) -> list[DuplicateGroup]:
        return [d for d in self.duplicates if not d.across_splits]

    @property
    def clean(self) -> bool:
        return not self.patients_in_several_splits and not self.duplicates

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the counts."""
        data = asdict(self)
        data["duplicate_groups_across_splits"] = len(self.duplicates_across)
        data["duplicate_groups_within_splits"] = len(self.duplicates_within)
        return data


def leakage(splits: Mapping[str, Mapping[str, np.ndarray]]) -> LeakageReport:
    """Patients in several splits and duplicate files (same sha256) within and across splits.

    ``splits`` maps each split name to its ``patient``, ``file_hash`` and ``path`` columns.
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
            key = digest.decode("ascii") if isinstance(digest, bytes) else str(digest)
            if key:
                by_hash[key].append((name, path))
    leaks = [PatientLeak(p, dict(s)) for p, s in sorted(by_patient.items()) if len(s) > 1]
    duplicates = [
        DuplicateGroup(digest, members, len({split for split, _ in members}) > 1)
        for digest, members in sorted(by_hash.items(), key=lambda item: item[1])
        if len(members) > 1
    ]
    return LeakageReport(images, len(by_patient), without, leaks, duplicates)

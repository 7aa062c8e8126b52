"""The leakage report of a cache: patients in more than one split, and byte-identical images.

A model evaluated on a patient it was trained on, or on a copy of a training image, scores too well.
Both are read from the meta columns the build stored (``patient``, ``file_hash`` = sha256 of the source
file), so the report costs no pass over the pixels. Images without a patient id are not grouped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from .reader import Cache


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


def leakage(cache: Cache) -> LeakageReport:
    """Patients in several splits and duplicate files (same sha256) within and across splits."""
    by_patient: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    images = without = 0
    for name in cache.splits:
        split = cache[name]
        patients = split.meta["patient"]
        hashes = split.meta["file_hash"]
        paths = split.meta["path"]
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


def print_leakage(report: LeakageReport, console: Console, limit: int = 10) -> None:
    """The leakage section of ``show stats`` / ``info``: a summary line, then the worst offenders."""
    leaks = report.patients_in_several_splits
    across, within = report.duplicates_across, report.duplicates_within
    style = "green" if report.clean else "yellow"
    console.print(
        f"[{style}]leakage:[/] {len(leaks)} of {report.patients:,} patients in more than one split; "
        f"{len(across)} duplicate group(s) across splits, {len(within)} within a split "
        f"(same sha256); {report.images_without_patient:,} image(s) without a patient id",
        highlight=False,
    )
    if leaks:
        table = Table(title="patients in more than one split", title_justify="left", title_style="yellow")
        table.add_column("patient")
        table.add_column("images per split")
        for leak in leaks[:limit]:
            table.add_row(leak.patient, ", ".join(f"{s}: {n}" for s, n in leak.splits.items()))
        if len(leaks) > limit:
            table.add_row(f"... and {len(leaks) - limit} more", "(all in --json)")
        console.print(table)
    if report.duplicates:
        table = Table(title="identical files (same sha256)", title_justify="left", title_style="yellow")
        table.add_column("where")
        table.add_column("files")
        for group in (across + within)[:limit]:
            files = ", ".join(f"{path} ({split})" for split, path in group.images)
            table.add_row("across splits" if group.across_splits else "within a split", files)
        if len(report.duplicates) > limit:
            table.add_row(f"... and {len(report.duplicates) - limit} more", "(all in --json)")
        console.print(table)

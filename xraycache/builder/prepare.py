"""Between the scan and the decode: DICOM identifiers, CSV labels, patient-level re-splits and folds.

``prepare`` takes the folder scan and returns it with each file's patient (a pseudonym for DICOM), study,
label(s), split and fold settled, plus the root attributes that record what the data said (the CSV's
digest, the label kind, the pseudonym key id: incremental rebuilds compare them), plus the CSV rows that
named no file. It reads DICOM headers (not pixels) because the split of a file must be known before any
pixel is decoded: the output's per-split arrays are sized from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import InputError, OptionError, literal
from ..core.options import SourceOptions
from ..core.schema import MAX_LABELS, MAX_NAME_CHARS
from ..imaging.decoders import dicom
from . import identifiers
from .labels_csv import Row, match, read_labels_csv
from .scan import IMAGE_SUFFIXES, ScanResult, SourceFile
from .splits import assign_fold, assign_split, group_key


@dataclass
class Prepared:
    """The scan with everything settled, the attributes recording it, and CSV rows that named no file."""

    found: ScanResult
    attrs: dict[str, Any]
    rows_without_file: list[str] = field(default_factory=list)


def _is_dicom_path(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() not in IMAGE_SUFFIXES


def _identifiers(found: ScanResult, keep: bool, attrs: dict[str, Any]) -> list[SourceFile]:
    """Patient and study of DICOM files from their headers: pseudonyms unless ``keep``."""
    dicoms = [f for f in found.files if _is_dicom_path(f.path)]
    if not dicoms:
        return found.files
    if not dicom.available():
        return found.files  # each DICOM is then skipped with the install hint when decoded
    key = b"" if keep else identifiers.pseudonym_key()
    if not keep:
        attrs["pseudonym_key_id"] = identifiers.key_id(key)
    out: list[SourceFile] = []
    for f in found.files:
        if not _is_dicom_path(f.path):
            out.append(f)
            continue
        patient, study = dicom.read_identifiers(found.root / f.path)
        if not keep:
            patient, study = identifiers.pseudonym(patient, key, "patient"), identifiers.pseudonym(study, key, "study")
        out.append(dataclasses.replace(f, patient=patient or f.patient, study=study))
    return out


def prepare(found: ScanResult, options: SourceOptions) -> Prepared:
    """Settle patients, labels, splits and folds of ``found`` (a new ScanResult; ``found`` is not changed)."""
    attrs: dict[str, Any] = {
        "pseudonym_key_id": "",
        "labels_csv": "",
        "labels_csv_sha256": "",
        "label_kind": "single",
    }
    files = [dataclasses.replace(f, source_split=f.split) for f in found.files]
    files = _identifiers(dataclasses.replace(found, files=files), options.keep_identifiers, attrs)
    label_names = found.label_names
    unlabeled = list(found.unlabeled)
    missing: list[str] = []
    layout = found.layout
    if options.labels is not None:
        table = read_labels_csv(
            options.labels, options.path_col, options.label_col, options.label_sep, options.patient_col
        )
        result = match(table, [f.path for f in files])
        label_names = _used_labels(table.file, result.rows.values())  # not those of rows that name no image
        index = {name: i for i, name in enumerate(label_names)}
        labelled: list[SourceFile] = []
        for f in files:
            row = result.rows.get(f.path)
            if row is None:
                continue
            indices = tuple(index[name] for name in row.labels)
            labelled.append(
                dataclasses.replace(
                    f,
                    label=indices[0] if indices else 0,
                    labels=indices if table.multi else (),
                    patient=row.patient or f.patient,
                )
            )
        files = labelled
        unlabeled += result.unmatched_files
        missing = [row.path for row in result.unmatched_rows]
        layout = f"{found.layout}+csv"
        attrs.update(
            labels_csv=Path(options.labels).name,
            labels_csv_sha256=table.sha256,
            label_kind="multi" if table.multi else "single",
            csv_rows_without_file=len(missing),
        )
    if options.resplit is not None:
        fractions = options.fractions()
        files = [
            dataclasses.replace(f, split=assign_split(group_key(f.patient, f.path), fractions, options.seed))
            for f in files
        ]
    if options.folds:
        files = [
            dataclasses.replace(f, fold=assign_fold(group_key(f.patient, f.path), options.folds, options.seed))
            for f in files
        ]
    files.sort(key=lambda f: f.path)
    out = dataclasses.replace(
        found,
        layout=layout,
        label_names=tuple(label_names),
        files=files,
        unlabeled=sorted(unlabeled),
        multi_label=options.labels is not None and bool(options.label_sep),
    )
    return Prepared(out, attrs, missing)


def _used_labels(csv_file: Path, rows: Iterable[Row]) -> tuple[str, ...]:
    """The sorted label names of the rows that matched an image; InputError past what a cache may hold."""
    names = sorted({label for row in rows for label in row.labels})
    if len(names) > MAX_LABELS:
        raise OptionError(
            literal(f"labels CSV {csv_file.name} gives {len(names):,} distinct labels to the images, more than a ")
            + literal(f"cache holds ({MAX_LABELS:,}); is ")
            + "{label_col:name} the right column?",
            label_col="",
        )
    long = [name for name in names if len(name) > MAX_NAME_CHARS]
    if long:
        raise InputError(
            f"labels CSV {csv_file.name}: a label of {len(long[0]):,} characters, over the limit of {MAX_NAME_CHARS:,}"
        )
    return tuple(names)


def label_key(label_names: tuple[str, ...], source: SourceFile, multi: bool) -> str:
    """The label(s) of a file as one string (``"A|B"`` when multi-label), to compare with an old cache."""
    if multi:
        return "|".join(label_names[i] for i in source.labels)
    return label_names[source.label]

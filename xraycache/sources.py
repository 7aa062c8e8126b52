"""Between the scan and the decode: DICOM identifiers, CSV labels, patient-level re-splits and folds.

``prepare`` takes the folder scan and returns it with each file's patient (a pseudonym for DICOM), study,
label(s), split and fold settled, plus the root attributes that record how (they take part in the
incremental-rebuild settings check, so changing any of them is detected), plus the CSV rows that named
no file. It reads DICOM headers (not pixels) because the split of a file must be known before any
pixel is decoded: the output's per-split arrays are sized from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import dicom
from .errors import DecodeError, InputError
from .labels import match, read_labels_csv
from .scan import IMAGE_SUFFIXES, ScanResult, SourceFile
from .splits import assign_fold, assign_split, group_key, parse_fractions
from .window import DTYPES, WINDOWS, OutDtype, Window

# Root attributes written by every build (defaults included) and compared by incremental rebuilds.
SETTING_KEYS = (
    "window",
    "dtype",
    "identifiers",
    "pseudonym_key_id",
    "labels_csv_sha256",
    "labels_columns",
    "label_kind",
    "resplit",
    "seed",
    "folds",
)
MAX_FOLDS = 100


@dataclass(frozen=True)
class SourceOptions:
    """The build options of issue 7 (all default to "off")."""

    window: Window = "auto"
    dtype: OutDtype = "uint8"
    labels: str | None = None  # CSV file
    path_col: str = "path"
    label_col: str = "label"
    label_sep: str | None = None
    patient_col: str | None = None
    resplit: str | None = None  # "0.8,0.1,0.1"
    seed: int = 0
    folds: int = 0
    keep_identifiers: bool = False

    def validate(self) -> None:
        """InputError for option values no build can use."""
        if self.window not in WINDOWS:
            raise InputError(f"--window {self.window!r} is not one of {', '.join(WINDOWS)}")
        if self.dtype not in DTYPES:
            raise InputError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.folds < 0 or self.folds == 1 or self.folds > MAX_FOLDS:
            raise InputError(f"--folds {self.folds}: use 0 (none) or 2 to {MAX_FOLDS}")
        if self.resplit is not None:
            parse_fractions(self.resplit)
        if self.labels is None and (self.label_sep or self.patient_col):
            raise InputError("--label-sep and --patient-col need --labels FILE.csv")


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
    try:
        dicom._pydicom()
    except DecodeError:
        return found.files  # each DICOM is then skipped with the install hint when decoded
    key = b"" if keep else dicom.pseudonym_key()
    if not keep:
        attrs["pseudonym_key_id"] = dicom.key_id(key)
    out: list[SourceFile] = []
    for f in found.files:
        if not _is_dicom_path(f.path):
            out.append(f)
            continue
        patient, study = dicom.read_identifiers(found.root / f.path)
        if not keep:
            patient, study = dicom.pseudonym(patient, key, "patient"), dicom.pseudonym(study, key, "study")
        out.append(dataclasses.replace(f, patient=patient or f.patient, study=study))
    return out


def prepare(found: ScanResult, options: SourceOptions) -> Prepared:
    """Settle patients, labels, splits and folds of ``found`` (a new ScanResult; ``found`` is not changed)."""
    options.validate()
    attrs: dict[str, Any] = {
        "window": options.window,
        "dtype": options.dtype,
        "identifiers": "kept" if options.keep_identifiers else "pseudonymised",
        "pseudonym_key_id": "",
        "labels_csv": "",
        "labels_csv_sha256": "",
        "labels_columns": "",
        "label_kind": "single",
        "resplit": options.resplit or "",
        "seed": options.seed if options.resplit or options.folds else 0,
        "folds": options.folds,
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
        index = {name: i for i, name in enumerate(table.label_names)}
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
        label_names = table.label_names
        layout = f"{found.layout}+csv"
        attrs.update(
            labels_csv=Path(options.labels).name,
            labels_csv_sha256=table.sha256,
            labels_columns=f"path={options.path_col} label={options.label_col} sep={options.label_sep or ''} "
            f"patient={options.patient_col or ''}",
            label_kind="multi" if table.multi else "single",
            csv_rows_without_file=len(missing),
        )
    if options.resplit is not None:
        fractions = parse_fractions(options.resplit)
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


def label_key(label_names: tuple[str, ...], source: SourceFile, multi: bool) -> str:
    """The label(s) of a file as one string (``"A|B"`` when multi-label), to compare with an old cache."""
    if multi:
        return "|".join(label_names[i] for i in source.labels)
    return label_names[source.label]

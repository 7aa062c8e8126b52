"""Labels from a CSV file (NIH ChestX-ray14's ``Data_Entry_2017.csv`` and the like).

``--labels FILE.csv --path-col COL --label-col COL [--label-sep '|'] [--patient-col COL]``. The CSV's
delimiter (comma, semicolon or tab) is sniffed. A row is matched to an image by its path relative to SRC,
else by file name where that name is unique among both the rows and the images (NIH keeps its images in
twelve sub-folders and lists bare names), else by the file name without its suffix (RSNA's ``patientId``,
VinDr's ``image_id`` name ``<id>.dcm`` files). With ``--label-sep`` the labels are multi-label (stored as an
(N, C) multi-hot matrix); without, each row has one class. Rows whose file is missing and images with no
row are both reported: the images are skipped with that reason, the rows listed in the build report.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.errors import DecodeError, InputError, OptionError, literal
from ..core.files import read_regular

SNIFF_BYTES = 64 << 10
MAX_CSV_BYTES = 1 << 30  # a labels CSV larger than this is refused (MIMIC-CXR's metadata is ~100 MB)
MAX_FIELD_CHARS = 1 << 20  # one cell; Python's csv stops at 131,072 by default, with a traceback
DELIMITERS = ",;\t"


@dataclass(frozen=True)
class Row:
    """One CSV row: the path it names, its label names and its patient (may be empty)."""

    path: str
    labels: tuple[str, ...]
    patient: str
    line: int


@dataclass
class CsvLabels:
    """A parsed labels CSV, indexed for matching."""

    file: Path
    sha256: str
    multi: bool
    label_names: tuple[str, ...]
    rows: list[Row]
    by_path: dict[str, list[Row]] = field(default_factory=dict)
    by_name: dict[str, list[Row]] = field(default_factory=dict)


def normalize(path: str) -> str:
    """A CSV path as a POSIX path relative to SRC (backslashes, ``./`` and surrounding blanks removed)."""
    text = path.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text.lstrip("/")


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:SNIFF_BYTES], delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def read_labels_csv(
    file: str | os.PathLike[str],
    path_col: str,
    label_col: str,
    label_sep: str | None = None,
    patient_col: str | None = None,
) -> CsvLabels:
    """Parse the labels CSV; InputError naming the available columns when one is missing."""
    path = Path(file)
    try:
        raw, _ = read_regular(path, MAX_CSV_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read labels CSV {path}: {exc.strerror or exc}") from None
    except DecodeError as exc:
        raise InputError(f"cannot read labels CSV {path}: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    previous = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        rows = _rows(path, text, path_col, label_col, label_sep, patient_col)
    finally:
        csv.field_size_limit(previous)
    if not rows:
        raise InputError(f"labels CSV {path} has no rows with a value in column {path_col!r}")
    names = tuple(sorted({label for row in rows for label in row.labels}))
    if not names:
        raise InputError(f"labels CSV {path} has no labels in column {label_col!r}")
    result = CsvLabels(path, hashlib.sha256(raw).hexdigest(), bool(label_sep), names, rows)
    for row in rows:
        result.by_path.setdefault(row.path, []).append(row)
        result.by_name.setdefault(PurePosixPath(row.path).name, []).append(row)
    return result


def _rows(
    path: Path, text: str, path_col: str, label_col: str, label_sep: str | None, patient_col: str | None
) -> list[Row]:
    """The CSV's rows (header checked); InputError naming the line for a cell over the field limit."""
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=_dialect(text))
    try:
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        for option, column in (("path_col", path_col), ("label_col", label_col), ("patient_col", patient_col)):
            if column is not None and column not in columns:
                raise OptionError(
                    literal(f"labels CSV {path} has no column {column!r} (")
                    + f"{{{option}:name}}"
                    + literal(f"); its columns: {', '.join(columns) or 'none'}"),
                    **{option: column},
                )
        rows: list[Row] = []
        for line, record in enumerate(reader, start=2):
            rel = normalize(record.get(path_col) or "")
            if not rel:
                continue
            value = (record.get(label_col) or "").strip()
            if label_sep:
                labels = tuple(sorted({part.strip() for part in value.split(label_sep) if part.strip()}))
            else:
                labels = (value,) if value else ()
            patient = (record.get(patient_col) or "").strip() if patient_col else ""
            rows.append(Row(rel, labels, patient, line))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise InputError(
                f"labels CSV {path} line {reader.line_num + 1}: a field is longer than {MAX_FIELD_CHARS:,} characters "
                "(the limit of one cell); is it the right file?"
            ) from None
        raise InputError(f"labels CSV {path} line {reader.line_num}: {exc}") from None
    return rows


@dataclass
class Match:
    """The outcome of matching the scanned images with the CSV rows."""

    rows: dict[str, Row]  # image path -> its row
    unmatched_files: list[tuple[str, str]]  # (image path, reason)
    unmatched_rows: list[Row]  # rows whose file was not found under SRC


def match(labels: CsvLabels, paths: list[str]) -> Match:
    """Match images to rows: by relative path, else by a file name unique on both sides."""
    name_counts = Counter(PurePosixPath(p).name for p in paths)
    stem_counts = Counter(PurePosixPath(p).stem for p in paths)
    matched: dict[str, Row] = {}
    unmatched: list[tuple[str, str]] = []
    used: set[int] = set()
    for rel in paths:
        candidates = labels.by_path.get(rel)
        if not candidates:
            name, stem = PurePosixPath(rel).name, PurePosixPath(rel).stem
            by_name, counts = labels.by_name.get(name, []), name_counts[name]
            if not by_name and stem != name:  # ids without the suffix (RSNA patientId, VinDr image_id)
                by_name, counts = labels.by_name.get(stem, []), stem_counts[stem]
            if by_name and counts > 1:
                unmatched.append((rel, f"no row for this path in {labels.file.name}, and its file name is not unique"))
                continue
            candidates = by_name
        if not candidates:
            unmatched.append((rel, f"no row in {labels.file.name}"))
            continue
        if len({row.labels for row in candidates}) > 1:
            lines = ", ".join(str(row.line) for row in candidates[:4])
            unmatched.append((rel, f"conflicting labels in {labels.file.name} (lines {lines})"))
            used.update(id(row) for row in candidates)
            continue
        row = candidates[0]
        used.update(id(r) for r in candidates)
        if not row.labels and not labels.multi:
            unmatched.append((rel, f"empty label in {labels.file.name} line {row.line}"))
            continue
        matched[rel] = row
    missing = [row for row in labels.rows if id(row) not in used]
    return Match(matched, unmatched, missing)

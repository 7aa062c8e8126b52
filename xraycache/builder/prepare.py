"""Between the scan and the decode: DICOM identifiers, CSV labels, patient-level re-splits and folds.

``prepare`` takes the folder scan and returns it with each file's patient (a pseudonym for DICOM), study,
label(s), split and fold settled, plus the root attributes that record what the data said (the CSV's
digest, the label kind, the pseudonym key id: incremental rebuilds compare them), plus the CSV rows that
named no file. It reads DICOM headers (not pixels) because the split of a file must be known before any
pixel is decoded: the output's per-split arrays are sized from it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import InputError, OptionError, literal
from ..core.options import SourceOptions
from ..core.schema import (
    CODE_NEGATIVE,
    CODE_POSITIVE,
    MAX_ANNOTATORS,
    MAX_LABELS,
    MAX_NAME_CHARS,
    MAX_SPLITS,
    split_name_problem,
    storable_path,
)
from ..core.table_spec import compiled, split_name
from ..imaging.decoders import dicom
from . import identifiers
from .label_cells import union_codes
from .scan import IMAGE_SUFFIXES, UNLABELED, ScanResult, SourceFile
from .split_lists import SplitLists
from .splits import assign_fold, group_key, resplit

if TYPE_CHECKING:
    from .table_rows import ImageRow
    from .table_scan import TableScan


@dataclass
class Prepared:
    """The scan with everything settled, the attributes recording it, and CSV rows that named no file."""

    found: ScanResult
    attrs: dict[str, Any]
    rows_without_file: list[str] = field(default_factory=list)


def _is_dicom_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES


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
    files = [f if f.source_split else dataclasses.replace(f, source_split=f.split) for f in found.files]
    patterns = _patterns(options)
    files = _identifiers(dataclasses.replace(found, files=files), options.keep_identifiers, attrs)
    if found.table is None and patterns:  # after the DICOM headers: an explicit pattern wins
        files = [_found_ids(f, patterns) for f in files]
    label_names = found.label_names
    unlabeled = list(found.unlabeled)
    missing: list[str] = []
    listed = SplitLists.read(options.split_lists())
    lists_digest = listed.digest()
    if found.table is not None:
        table = found.table
        files, label_names = _apply_rows(files, table, options, patterns, unlabeled)
        missing = [row.key for row in table.rows_without_file]
        attrs.update(
            labels_csv=", ".join(table.selection.tables),
            labels_csv_sha256=table.selection.sha256 + lists_digest,
            label_kind=table.selection.kind,
            csv_rows_without_file=len(missing),
        )
    elif options.split_list:
        attrs["labels_csv_sha256"] = lists_digest
    if options.split_list:
        files = listed.assign(files, unlabeled)
    if options.resplit is not None:
        files = resplit(files, options.fractions(), options.seed, options.keep_test)
    _check_splits({f.split for f in files})
    if options.folds:
        files = [
            dataclasses.replace(f, fold=assign_fold(group_key(f.patient, f.path), options.folds, options.seed))
            for f in files
        ]
    files.sort(key=lambda f: f.path)
    out = dataclasses.replace(
        found,
        label_names=tuple(label_names),
        files=files,
        unlabeled=sorted(unlabeled),
        multi_label=found.table is not None and found.table.selection.multi,
        coded=found.table is not None and bool(found.table.selection.coded),
        annotator_slots=max((len(f.annotators) for f in files), default=0),
        annotator_names=_annotator_names(files),
    )
    if out.table is not None:  # the rows are applied: keep only what the report counts
        out.table = out.table.counts_only()
    return Prepared(out, attrs, missing)


def _patterns(options: SourceOptions) -> list[tuple[str, re.Pattern[str]]]:
    """``--patient-pattern`` / ``--study-pattern``, compiled: (the SourceFile field, its regular expression)."""
    found = []
    for name, pattern in (("patient", options.patient_pattern), ("study", options.study_pattern)):
        if pattern is not None:
            found.append((name, compiled(pattern, f"{name}_pattern")))
    return found


def _path_ids(path: str, patterns: list[tuple[str, re.Pattern[str]]]) -> dict[str, Any]:
    """The ids the patterns find in a path (its first group, else the whole match), by field."""
    out: dict[str, Any] = {}
    for name, regex in patterns:
        match = regex.search(path)
        found = (match.group(1) if regex.groups else match.group(0)) if match else None
        if found:  # a group that took part in no match is None: no id from this pattern
            out[name] = sys.intern(found)  # one string per patient, not per image
    return out


def _found_ids(f: SourceFile, patterns: list[tuple[str, re.Pattern[str]]]) -> SourceFile:
    ids = _path_ids(f.path, patterns)
    return dataclasses.replace(f, **ids) if ids else f


def _apply_rows(
    files: list[SourceFile],
    table: TableScan,
    options: SourceOptions,
    patterns: list[tuple[str, re.Pattern[str]]],
    unlabeled: list[tuple[str, str]],
) -> tuple[list[SourceFile], tuple[str, ...]]:
    """Each file with the labels, split, patient, study and view of its table rows (ids from a column, else a
    path pattern, else the DICOM header or file name). Several rows of one file give the union of their labels
    (and, with --annotator-col, each annotator's own); files whose rows disagree on anything else (or, single-
    label, on the label), or give no label or split, go to ``unlabeled`` with the reason."""
    selection = table.selection
    settled: list[tuple[SourceFile, ImageRow, tuple[ImageRow, ...]]] = []
    for f in files:
        rows = table.rows[f.path]
        row = rows[0]
        if len(rows) > 1 and len({_what(r) for r in rows}) > 1:
            lines = ", ".join(f"{r.table} line {r.line}" for r in rows[:4])
            unlabeled.append((f.path, f"table rows that disagree ({lines})"))
        elif len(rows) > 1 and not selection.multi and len({r.labels for r in rows}) > 1:
            lines = ", ".join(f"{r.table} line {r.line}" for r in rows[:4])
            unlabeled.append(
                (f.path, f"table rows with different labels ({lines}); --label-sep or --label-list takes their union")
            )
        elif selection.label_col and not row.labels and not selection.multi:
            why = row.unjoined or f"an empty {selection.label_col!r}"
            unlabeled.append((f.path, f"no label: {why} ({row.table} line {row.line})"))
        elif options.split_col and not row.split:
            why = row.unjoined or f"an empty {options.split_col!r}"
            unlabeled.append((f.path, f"no split: {why} ({row.table} line {row.line})"))
        else:
            settled.append((f, _union(rows, selection.coded), tuple(rows) if options.annotator_col else ()))
    if selection.coded:
        label_names: tuple[str, ...] = _storable_labels(Path(selection.tables[0]), list(selection.coded), "label_cols")
    elif selection.label_col is None:
        label_names = (UNLABELED,)
    else:
        label_names = _used_labels(Path(selection.tables[0]), [row for _, row, _ in settled])
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    multi = selection.multi
    for f, row, own in settled:
        indices = _positives(row.codes) if selection.coded else tuple(index[name] for name in row.labels)
        ids = _path_ids(f.path, patterns) if patterns else {}
        out.append(
            SourceFile(
                f.path,
                split_name(row.split) if row.split else f.split,
                indices[0] if indices and not multi else 0,
                row.patient or ids.get("patient") or f.patient,
                study=row.study or ids.get("study") or f.study,
                source_split=row.split or f.source_split,
                fold=f.fold,
                labels=indices if multi else (),
                view=row.view,
                codes=row.codes,
                annotators=_by_annotator(own, index, len(label_names), bool(selection.coded), f.path),
            )
        )
    return out, label_names


def _what(row: ImageRow) -> tuple[object, ...]:
    """What a row says about its image besides its labels: rows naming one image must agree on it."""
    return (row.split, row.patient, row.study, row.view, row.unjoined)


def _union(rows: list[ImageRow], coded: tuple[str, ...]) -> ImageRow:
    """The rows of one image as one: its labels the union of theirs (codes: the strongest per label)."""
    if len(rows) == 1:
        return rows[0]
    if coded:
        return dataclasses.replace(rows[0], codes=union_codes([r.codes for r in rows]))
    return dataclasses.replace(rows[0], labels=tuple(sorted({label for r in rows for label in r.labels})))


def _positives(codes: tuple[int, ...]) -> tuple[int, ...]:
    """The labels a code row marks positive (what the per-label counts and histograms count)."""
    return tuple(i for i, code in enumerate(codes) if code == CODE_POSITIVE)


def _by_annotator(
    rows: tuple[ImageRow, ...], index: dict[str, int], n_labels: int, coded: bool, path: str
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Each annotator's labels of one image as codes, the union of that annotator's rows: the codes of a coded
    table; for a table of names, 1 for the names an annotator gave and 0 for the others (VinDr's rows list
    what a radiologist found, so a name not given is a no). InputError past MAX_ANNOTATORS."""
    if not rows:
        return ()
    mine: dict[str, list[ImageRow]] = {}
    for row in rows:
        mine.setdefault(row.annotator, []).append(row)
    if len(mine) > MAX_ANNOTATORS:
        raise InputError(
            f"{storable_path(path)} has {len(mine):,} annotators in its table rows, more than a cache keeps "
            f"({MAX_ANNOTATORS}); is --annotator-col the right column?"
        )
    out = []
    for who, given in sorted(mine.items()):
        if len(who) > MAX_NAME_CHARS:
            raise InputError(f"an annotator name of {len(who):,} characters, over the limit of {MAX_NAME_CHARS:,}")
        if coded:
            codes = union_codes([r.codes for r in given])
        else:
            on = {index[name] for r in given for name in r.labels}
            codes = tuple(CODE_POSITIVE if i in on else CODE_NEGATIVE for i in range(n_labels))
        out.append((who, codes))
    return tuple(out)


def _annotator_names(files: list[SourceFile]) -> tuple[str, ...]:
    """Every annotator's name, sorted; InputError past what a cache keeps."""
    names = tuple(sorted({who for f in files for who, _ in f.annotators}))
    if len(names) > MAX_LABELS:
        raise InputError(
            f"the tables name {len(names):,} annotators, more than a cache keeps ({MAX_LABELS:,}); "
            "is --annotator-col the right column?"
        )
    return names


def _check_splits(names: set[str]) -> None:
    """InputError for split names a table or list gives that a cache cannot hold (before any pixel is decoded)."""
    for name in sorted(names):
        problem = split_name_problem(name)
        if problem:
            raise InputError(f"the tables put images in a split named {storable_path(name)!r}, which {problem}")
    if len(names) > MAX_SPLITS:
        raise InputError(
            f"the tables give {len(names):,} splits, more than a cache holds ({MAX_SPLITS:,}); is the split column right?"
        )


def _used_labels(csv_file: Path, rows: Iterable[ImageRow]) -> tuple[str, ...]:
    """The sorted label names of the rows that matched an image (or, coded, the columns in their order);
    InputError past what a cache may hold."""
    names = sorted({label for row in rows for label in row.labels})
    return _storable_labels(csv_file, names, "label_col")


def _storable_labels(csv_file: Path, names: list[str], option: str) -> tuple[str, ...]:
    """``names``, or an error when a cache cannot hold that many or that long."""
    if len(names) > MAX_LABELS:
        raise OptionError(
            literal(f"labels CSV {csv_file.name} gives {len(names):,} distinct labels to the images, more than a ")
            + literal(f"cache holds ({MAX_LABELS:,}); is ")
            + f"{{{option}:name}} right?",
            **{option: ""},
        )
    long = [name for name in names if len(name) > MAX_NAME_CHARS]
    if long:
        raise InputError(
            f"labels CSV {csv_file.name}: a label of {len(long[0]):,} characters, over the limit of {MAX_NAME_CHARS:,}"
        )
    return tuple(names)


def label_key(label_names: tuple[str, ...], source: SourceFile, multi: bool, coded: bool = False) -> str:
    """The label(s) of a file as one string (``"A|B"`` when multi-label, the codes ``"1,0,-1,-2"`` when coded),
    to compare with an old cache."""
    if coded:
        return ",".join(str(code) for code in source.codes)
    if multi:
        return "|".join(label_names[i] for i in source.labels)
    return label_names[source.label]

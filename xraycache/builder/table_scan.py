"""The scan of a build whose ``--labels`` tables name the images: any depth under SRC, only what they name.

Two ways to find a row's file, chosen from the table:

- **by path** (every row holds a ``/``: CheXpert's ``Path``, a MIMIC path template): each named file is looked
  up with one ``stat``, SRC is not walked (MIMIC-CXR-JPG has 377,110 files in 227,835 folders). A table
  whose paths start with the release folder (``CheXpert-v1.0-small/train/...`` with SRC being that folder,
  or its parent) is matched on the paths' tail: the number of leading folders to drop is found on the first
  rows and used for all. Files under SRC that no row names are not looked for.
- **by name** (NIH's ``Image Index``, RSNA's ``patientId``, VinDr's ``image_id``): SRC is walked once and a
  row matches the file of that name, or of that name without its suffix, where the name is unique on both
  sides; files that no row names are listed (skipped, with the reason).

A path leaving SRC (``..``) names no file. Each file's split comes from its table (``--split-col``,
``SPLIT=FILE``), else from its first folder where that is named like a split (``train``, ``valid``,
``test`` ...), else it is ``all``; ``prepare`` applies the rows' labels and identifiers.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.options import SourceOptions
from ..core.schema import storable_path
from ..core.table_spec import SPLIT_SYNONYMS
from .scan import UNLABELED, ScanResult, SourceFile, order_splits, patient_id, walk
from .table_rows import ImageRow, Selection, select

PROBE_ROWS = 64  # rows whose files settle how many leading folders of the table's paths to drop


@dataclass
class TableScan:
    """What the tables said, for ``prepare`` and the report: each found file's rows, and the rows without one."""

    selection: Selection
    rows: dict[str, list[ImageRow]]  # file path relative to SRC -> the rows naming it
    rows_without_file: list[ImageRow] = field(default_factory=list)
    by_path: bool = True  # found by stat (SRC not walked), else by a walk and names
    dropped_folders: int = 0  # leading folders of the table's paths that SRC does not have

    def counts_only(self) -> TableScan:
        """This scan without its rows (what the report needs), so a build does not hold the tables to its end."""
        selection = dataclasses.replace(self.selection, rows=[], filtered_keys=set(), n_rows=len(self.selection.rows))
        return dataclasses.replace(self, selection=selection, rows={}, rows_without_file=[])


def folder_split(rel: str) -> tuple[str, str]:
    """The split of a file from the first of its folders named like one (``CheXpert-v1.0-small/valid/...``:
    val), else ``all``; and that folder's own name (``valid``), kept as the source's split."""
    for folder in rel.split("/")[:-1]:
        split = SPLIT_SYNONYMS.get(folder.lower())
        if split:
            return split, folder
    return "all", "all"


def scan_tables(src: str | os.PathLike[str], options: SourceOptions) -> ScanResult:
    """The images the ``--labels`` tables name under ``src`` (after ``--join`` and ``--where``)."""
    root = Path(src)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder; give the folder that holds the images"
        raise InputError(f"source folder {root} {what}")
    selection = select(options)
    keys = list(dict.fromkeys(row.key for row in selection.rows))
    by_key: dict[str, list[ImageRow]] = {}
    for row in selection.rows:
        by_key.setdefault(row.key, []).append(row)
    result = ScanResult(root.resolve(), "table", (UNLABELED,), [])
    table = TableScan(selection, {})
    if keys and all("/" in key for key in keys):
        drop = _dropped_folders(root, keys)
        table.dropped_folders = drop
        _find_by_path(root, keys, by_key, drop, table)
    else:  # bare names (NIH, RSNA) or some: find the files by name
        table.by_path = False
        _find_by_name(root, by_key, table, result)
    if not table.rows:
        examples = ", ".join(storable_path(row.key) for row in table.rows_without_file[:3])
        unnamed = ""
        if result.unlabeled:
            path, reason = result.unlabeled[0]
            unnamed = f"; {len(result.unlabeled):,} file(s) there match no row, e.g. {storable_path(path)}: {reason}"
        raise InputError(
            f"the tables' {len(selection.rows):,} image rows name no file under {root}"
            + (f" (e.g. {examples})" if examples else "")
            + unnamed
            + "; is SRC the release folder, and --path-col the column of the images?"
        )
    result.files = []
    for rel in sorted(table.rows):
        split, source_split = folder_split(rel)
        result.files.append(SourceFile(rel, split, 0, patient_id(_name(rel)), source_split=source_split))
    result.table = table
    return result


def _parts(key: str) -> list[str]:
    """A key's path parts; empty when it would leave SRC (``..``, ``.``) or has empty parts."""
    parts = key.split("/")
    return [] if any(part in ("", ".", "..") for part in parts) else parts


def _dropped_folders(root: Path, keys: list[str]) -> int:
    """How many leading folders of the table's paths SRC does not have (0 when SRC is the folder they start
    from). Only folders every path shares can go (the release folder, ``CheXpert-v1.0-small/``), never the
    folder that tells files apart; the number is voted by the first rows whose file is found (probing rows
    spread over the whole table, so that a download missing its first patients still finds them)."""
    shared = _shared_folders(keys)
    votes: Counter[int] = Counter()
    step = max(1, len(keys) // (PROBE_ROWS * 8))
    for key in keys[::step]:
        parts = _parts(key)
        for drop in range(min(shared, len(parts) - 1) + 1):
            if _is_file(os.path.join(root, *parts[drop:])):
                votes[drop] += 1
                break
        if sum(votes.values()) >= PROBE_ROWS:
            break
    return max(votes, key=lambda d: (votes[d], -d)) if votes else 0


def _shared_folders(keys: list[str]) -> int:
    """How many leading folders every key has in common."""
    prefix = keys[0].split("/")[:-1]
    text = "/".join(prefix) + "/"
    for key in keys:
        if key.startswith(text):
            continue
        parts = key.split("/")[:-1]
        same = 0
        while same < min(len(prefix), len(parts)) and prefix[same] == parts[same]:
            same += 1
        prefix = prefix[:same]
        if not prefix:
            return 0
        text = "/".join(prefix) + "/"
    return len(prefix)


def _is_file(path: str) -> bool:
    """Whether ``path`` exists and is not a folder (a FIFO is taken, and skipped with its reason when decoded)."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):  # missing, unreadable, a NUL in the name
        return False


def _find_by_path(root: Path, keys: list[str], by_key: dict[str, list[ImageRow]], drop: int, table: TableScan) -> None:
    """One ``stat`` per key, its first ``drop`` folders dropped: found files, and the rows without one."""
    base = os.path.join(root, "")
    for key in keys:
        parts = _parts(key)[drop:]
        rel = "/".join(parts)
        if parts and _is_file(base + rel):
            table.rows.setdefault(rel, []).extend(by_key[key])
        else:
            table.rows_without_file.extend(by_key[key])


def _name(path: str) -> str:
    """The file name of a path."""
    return path.rpartition("/")[2]


def _stem(path: str) -> str:
    """The file name of a path without its suffix."""
    name = _name(path)
    return os.path.splitext(name)[0]


def _find_by_name(root: Path, by_key: dict[str, list[ImageRow]], table: TableScan, result: ScanResult) -> None:
    """Walk SRC; match each image file to the rows naming its path, else its unique name, else its unique stem."""
    images, result.ignored, unreadable = walk(root)
    paths = ["/".join(parts) for parts in images]
    names = Counter(_name(p) for p in paths)
    stems = Counter(_stem(p) for p in paths)
    by_name: dict[str, list[str]] = {}
    for key in by_key:
        by_name.setdefault(_name(key), []).append(key)
    used: set[str] = set()
    tables = ", ".join(table.selection.tables)
    filtered = table.selection.filtered_keys
    for rel in paths:
        name, stem = _name(rel), _stem(rel)
        if rel in by_key:
            found, count = [rel], 1
        else:
            found, count = by_name.get(name, []), names[name]
            if not found and stem != name:  # ids without the suffix (RSNA patientId, VinDr image_id)
                found, count = by_name.get(stem, []), stems[stem]
        if len(found) > 1 or (found and count > 1):  # the row matches no file: it is listed as such
            result.unlabeled.append((rel, f"no row for this path in {tables}, and its file name is not unique"))
        elif found:
            used.add(found[0])
            table.rows.setdefault(rel, []).extend(by_key[found[0]])
        elif not ({rel, name, stem} & filtered):  # a file whose rows --where removed is not "without a row"
            result.unlabeled.append((rel, f"no row in {tables}"))
    result.unlabeled += unreadable
    table.rows_without_file = [row for key, rows in by_key.items() if key not in used for row in rows]


def table_summary(table: TableScan, files: list[SourceFile]) -> dict[str, Any]:
    """What the tables gave, for the build report: rows, what the filters and joins did, and the images
    written by split with their patients, studies and views (what a user checks against the release)."""
    selection = table.selection
    by_split: dict[str, dict[str, Any]] = {}
    for split in order_splits({f.split for f in files}):
        chosen = [f for f in files if f.split == split]
        by_split[split] = {
            "images": len(chosen),
            "patients": len({f.patient for f in chosen if f.patient}),
            "studies": len({(f.patient, f.study) for f in chosen if f.study}),
            "views": dict(sorted(Counter(f.view for f in chosen if f.view).items())),
        }
    return {
        "tables": selection.tables,
        "rows": selection.n_rows,
        "rows_without_path": selection.no_path,
        "removed_by_where": dict(selection.filtered),
        "rows_without_join": dict(selection.joined),
        "ambiguous_join_keys": dict(selection.ambiguous),
        "found_by": "path" if table.by_path else "name",
        "dropped_folders": table.dropped_folders,
        "splits": by_split,
    }

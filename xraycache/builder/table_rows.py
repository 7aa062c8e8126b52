"""The rows of the ``--labels`` tables that name images: stacked, joined, filtered, each reduced to what a build stores.

``--labels`` gives one or more tables with a row per image (CheXpert's ``train.csv`` and ``valid.csv``, NIH's
``Data_Entry_2017.csv``, MIMIC's metadata table); ``--join FILE:KEYS`` adds the columns of other tables by
key (MIMIC's split table per ``dicom_id``, its label table per ``subject_id,study_id``), a left join: an
image row whose key has no row in a joined table keeps its place, with that table's cells empty, and is
counted; ``--where`` keeps the rows whose values match (views). Every ``--*-col`` may name a column of any
of these tables: the first table that has it (the ``--labels`` tables, then the joins in order) gives it.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..core.errors import OptionError, literal
from ..core.options import SourceOptions
from ..core.table_spec import JoinSpec, WhereSpec
from .tables import Table, read_table


@dataclass(frozen=True, slots=True)
class ImageRow:
    """What one table row says about the image it names."""

    key: str  # the image's path (relative to SRC, or ending in one), file name or id, normalised
    table: str  # the --labels table's file name
    line: int
    split: str  # the official split as the table gives it ("" when none)
    labels: tuple[str, ...]
    patient: str
    study: str
    view: str
    unjoined: str = ""  # the first --join table with no row for this one ("" when every join found one)


@dataclass
class Selection:
    """The image rows after joins and filters, and the counts the build report gives."""

    rows: list[ImageRow]
    multi: bool  # --label-sep: several labels per row
    label_col: str | None  # the label column used; None: every image is unlabeled
    tables: list[str]  # file names of the --labels tables
    sha256: str  # of every table's digest, in order: changes when any table does
    filtered: list[tuple[str, int]] = field(default_factory=list)  # (--where, rows it removed)
    joined: list[tuple[str, int]] = field(default_factory=list)  # (--join table, image rows it gave nothing)
    ambiguous: list[tuple[str, int]] = field(default_factory=list)  # (--join table, keys whose rows disagree)
    no_path: int = 0  # rows with an empty path cell
    filtered_keys: set[str] = field(default_factory=set)  # images whose rows --where removed: not "without a row"


def normalize(path: str) -> str:
    """A table's path as a POSIX path: no surrounding blanks, ``./`` or leading ``/``; a Windows path's
    backslashes made ``/`` (only in a path with no ``/``: elsewhere a backslash is part of a name)."""
    text = path.strip()
    if "/" not in text:
        text = text.replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text.lstrip("/")


class PathTemplate:
    """``--path-col`` as a column, or a template of columns: ``files/p{subject_id:.2}/p{subject_id}/{dicom_id}.jpg``.

    Only ``{column}`` and ``{column:.N}`` (its first N characters) are allowed: no attribute or index access,
    no conversions, so a template from anywhere cannot reach into Python objects.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[tuple[str, str | None, int | None]] = []  # (literal, column, first N characters)
        if "{" not in text and "}" not in text:
            self.parts = [("", text, None)]
            return
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise OptionError("{path_col}: " + literal(f"not a template: {exc}"), path_col=text) from None
        for literal_text, name, spec, conversion in parsed:
            if name is None:
                self.parts.append((literal_text, None, None))
                continue
            if not name or conversion or any(c in name for c in ".[]") or (spec and not _is_precision(spec)):
                raise OptionError(
                    "{path_col}: a template takes {{COLUMN}} and {{COLUMN:.N}} (its first N characters) only",
                    path_col=text,
                )
            self.parts.append((literal_text, name, int(spec[1:]) if spec else None))

    @property
    def columns(self) -> list[str]:
        """The columns the template reads."""
        return [name for _, name, _ in self.parts if name is not None]

    def render(self, value: dict[str, str]) -> str:
        """The path of one row (``""`` when a column it needs is empty)."""
        out = []
        for literal_text, name, first in self.parts:
            out.append(literal_text)
            if name is not None:
                cell = value[name]
                if not cell:
                    return ""
                out.append(cell[:first] if first is not None else cell)
        return "".join(out)


def _is_precision(spec: str) -> bool:
    return spec.startswith(".") and spec[1:].isdigit() and len(spec) <= 4


def _label_column(options: SourceOptions, tables: Sequence[Table]) -> str | None:
    if options.label_col:
        return options.label_col
    return "label" if any("label" in t.header for t in tables) else None


def select(options: SourceOptions) -> Selection:
    """The image rows of the ``--labels`` tables, joined and filtered; InputError or OptionError in one line."""
    template = PathTemplate(options.path_col)
    filters = options.filters()
    joins = options.joins()
    named = {
        "patient_col": options.patient_col,
        "study_col": options.study_col,
        "view_col": options.view_col,
        "split_col": options.split_col,
        "label_col": options.label_col,
    }
    wanted = {*template.columns, "label", *(c for c in named.values() if c), *(w.column for w in filters)}
    wanted.update(key for join in joins for key in join.keys)
    specs = options.tables()
    primaries = [read_table(spec.file, wanted, "labels table") for spec in specs]
    extra = [read_table(join.file, wanted, "joined table") for join in joins]
    label_col = _label_column(options, primaries + extra)
    checks: list[tuple[str, str | None, str]] = [("path_col", c, options.path_col) for c in template.columns]
    checks += [(name, c, c or "") for name, c in named.items()]
    checks += [("where", w.column, str(w)) for w in filters]
    for option, column, given in checks:
        if column and not any(column in t.header for t in primaries + extra):
            _no_column(option, column, given, primaries + extra)
    for join, table in zip(joins, extra, strict=True):
        for key in join.keys:
            if key not in table.header or not all(key in t.header for t in primaries):
                where = table if key not in table.header else next(t for t in primaries if key not in t.header)
                raise OptionError(
                    literal(f"{where.name} has no column {key!r} to join on (")
                    + "{join:name}"
                    + literal(f"); its columns: {', '.join(where.header)}"),
                    join=f"{join.file}:{','.join(join.keys)}",
                )
    digest = hashlib.sha256()
    for table in primaries + extra:
        digest.update(bytes.fromhex(table.sha256))
    selection = Selection([], bool(options.label_sep), label_col, [t.name for t in primaries], digest.hexdigest()[:64])
    indexes = [_JoinIndex(join, table) for join, table in zip(joins, extra, strict=True)]
    removed = [0] * len(filters)
    unjoined = [0] * len(joins)
    for spec, table in zip(specs, primaries, strict=True):
        for line, value in _joined(table, indexes, unjoined):
            verdict = _rejected_by(filters, value)
            key = template.render(value)
            if verdict is not None:
                removed[verdict] += 1
                if key:
                    selection.filtered_keys.add(normalize(key))
                continue
            if not key:
                selection.no_path += 1
                continue
            selection.rows.append(
                ImageRow(
                    normalize(key),
                    table.name,
                    line,
                    spec.split or (value.get(options.split_col, "") if options.split_col else ""),
                    _labels(value.get(label_col, "") if label_col else "", options.label_sep),
                    value.get(options.patient_col, "") if options.patient_col else "",
                    value.get(options.study_col, "") if options.study_col else "",
                    value.get(options.view_col, "") if options.view_col else "",
                    value.get(_UNJOINED, ""),
                )
            )
    selection.filtered = [(str(w), n) for w, n in zip(filters, removed, strict=True)]
    selection.joined = [(t.name, n) for t, n in zip(extra, unjoined, strict=True)]
    selection.ambiguous = [(t.name, index.ambiguous_keys) for t, index in zip(extra, indexes, strict=True)]
    return selection


_UNJOINED = "\0unjoined"  # a key no table's column can have: the first join that found no row


class _JoinIndex:
    """A joined table indexed by its key columns; keys whose rows disagree on a kept column are ambiguous."""

    def __init__(self, join: JoinSpec, table: Table) -> None:
        self.table = table
        self.keys = join.keys
        at = [table.index(key) for key in join.keys]
        self.by_key: dict[tuple[str, ...], tuple[str, ...]] = {}
        for row in table.rows:
            key = tuple(row[i] for i in at)
            before = self.by_key.setdefault(key, row)
            if before != row:
                self.by_key[key] = _AMBIGUOUS  # rows that disagree: nothing is taken from this table for that key
        self.ambiguous_keys = sum(1 for value in self.by_key.values() if value is _AMBIGUOUS)


_AMBIGUOUS: tuple[str, ...] = ("\0ambiguous",)


def _joined(table: Table, indexes: list[_JoinIndex], unjoined: list[int]) -> Iterator[tuple[int, dict[str, str]]]:
    """Each row of a --labels table with the columns of its joined rows (the table's own columns first)."""
    for line, row in zip(table.lines, table.rows, strict=True):
        value = dict(zip(table.columns, row, strict=True))
        for j, index in enumerate(indexes):
            match = index.by_key.get(tuple(value.get(key, "") for key in index.keys))
            if match is None or match is _AMBIGUOUS:
                unjoined[j] += 1
                why = "no row" if match is None else "rows that disagree"
                value.setdefault(_UNJOINED, f"{why} in {index.table.name} for its {','.join(index.keys)}")
                continue
            for column, cell in zip(index.table.columns, match, strict=True):
                value.setdefault(column, cell)
        yield line, value


def _rejected_by(filters: Sequence[WhereSpec], value: dict[str, str]) -> int | None:
    """The index of the first --where a row fails, or None when it passes them all."""
    for i, where in enumerate(filters):
        if (value.get(where.column, "") in where.values) != where.keep:
            return i
    return None


def _labels(cell: str, sep: str | None) -> tuple[str, ...]:
    if sep:
        return tuple(sorted({part.strip() for part in cell.split(sep) if part.strip()}))
    return (cell,) if cell else ()


def _no_column(option: str, column: str, value: str, tables: Sequence[Table]) -> None:
    names = ", ".join(dict.fromkeys(name for t in tables for name in t.header if name))
    where = tables[0].name if len(tables) == 1 else "the tables"
    raise OptionError(
        literal(f"{where} {'has' if len(tables) == 1 else 'have'} no column {column!r} (")
        + f"{{{option}}}"
        + literal(f"); the columns: {names or 'none'}"),
        **{option: value},
    )


def image_name(key: str) -> str:
    """The file name part of a key (``images/00000001_000.png`` -> ``00000001_000.png``)."""
    return PurePosixPath(key).name

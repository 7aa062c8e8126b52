"""The rows of the ``--labels`` tables that name images: stacked, joined, filtered, each reduced to what a build stores.

``--labels`` gives one or more tables with a row per image (CheXpert's ``train.csv`` and ``valid.csv``, NIH's
``Data_Entry_2017.csv``, MIMIC's metadata table); ``--join FILE:KEYS`` adds the columns of other tables by
key (MIMIC's split table per ``dicom_id``, its label table per ``subject_id,study_id``), a left join: an
image row whose key has no row in a joined table keeps its place, with that table's cells empty, and is
counted; ``--where`` keeps the rows whose values match (views). Every ``--*-col`` may name a column of any
of these tables: the first table that has it (the ``--labels`` tables, then the joins in order) gives it.
A row's labels are read in the shape the options say (``_LabelReader``): one name, names split by
``--label-sep`` or listed in a cell (``--label-list``), or one code per ``--label-cols`` column.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..core.errors import InputError, OptionError, literal
from ..core.options import SourceOptions
from ..core.schema import storable_path
from ..core.table_spec import JoinSpec, WhereSpec, label_columns_spec
from .label_cells import CODE_OF, list_cell
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
    codes: tuple[int, ...] = ()  # --label-cols: one code per column (labels.CODES), shared between equal rows
    annotator: str = ""  # --annotator-col: who gave this row's labels


@dataclass
class Selection:
    """The image rows after joins and filters, and the counts the build report gives."""

    rows: list[ImageRow]
    multi: bool  # --label-sep, --label-list or --label-cols: several labels per image
    label_col: str | None  # the label column used; None: every image is unlabeled
    tables: list[str]  # file names of the --labels tables
    sha256: str  # of every table's digest, in order: changes when any table does
    filtered: list[tuple[str, int]] = field(default_factory=list)  # (--where, rows it removed)
    joined: list[tuple[str, int]] = field(default_factory=list)  # (--join table, image rows it gave nothing)
    ambiguous: list[tuple[str, int]] = field(default_factory=list)  # (--join table, keys whose rows disagree)
    no_path: int = 0  # rows with an empty path cell
    filtered_keys: set[str] = field(default_factory=set)  # images whose rows --where removed: not "without a row"
    columns: list[str] = field(default_factory=list)  # every column of the tables, for messages
    n_rows: int = 0  # how many rows there are, also once ``rows`` is let go (``TableScan.counts_only``)
    coded: tuple[str, ...] = ()  # --label-cols: the label columns, in order (the images' label names)

    @property
    def kind(self) -> str:
        """The cache's ``label_kind``: ``coded`` (--label-cols), ``multi`` or ``single``."""
        return "coded" if self.coded else "multi" if self.multi else "single"


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
                cell = value.get(name, "")
                if not cell:
                    return ""
                out.append(cell[:first] if first is not None else cell)
        return "".join(out)


def _is_precision(spec: str) -> bool:
    """Whether a template's format spec is ``.N``, N at most 999 (the one spec a template takes)."""
    return spec.startswith(".") and spec[1:].isdigit() and len(spec) <= 4


def _label_column(options: SourceOptions, tables: Sequence[Table]) -> str | None:
    """``--label-col``, else the column ``label`` where a table has one, else None (the images unlabeled);
    with ``--label-cols``, the first of those columns (the images are labelled)."""
    if options.label_cols is not None:
        return _coded_columns(options, tables)[0]
    if options.label_col:
        return options.label_col
    return "label" if any("label" in t.header for t in tables) else None


@dataclass
class _Columns:
    """The columns the options name: where each row's path, ids, view, split and labels come from."""

    template: PathTemplate
    filters: tuple[WhereSpec, ...]
    joins: tuple[JoinSpec, ...]
    named: dict[str, str | None]  # option name -> column

    @classmethod
    def of(cls, options: SourceOptions) -> _Columns:
        named = {
            "patient_col": options.patient_col,
            "study_col": options.study_col,
            "view_col": options.view_col,
            "split_col": options.split_col,
            "label_col": options.label_col,
            "annotator_col": options.annotator_col,
        }
        return cls(PathTemplate(options.path_col), options.filters(), options.joins(), named)

    def wanted(self) -> set[str]:
        """Every column a row needs (``label`` too: the default label column where a table has it)."""
        out = {*self.template.columns, "label", *(c for c in self.named.values() if c)}
        out.update(w.column for w in self.filters)
        out.update(key for join in self.joins for key in join.keys)
        return out

    def check(self, options: SourceOptions, primaries: list[Table], extra: list[Table]) -> None:
        self._check(options, primaries, extra)
        if options.label_cols is not None:
            for column in _coded_columns(options, primaries + extra):
                if not any(column in t.header for t in primaries + extra):
                    _no_column("label_cols", column, options.label_cols, primaries + extra)

    def _check(self, options: SourceOptions, primaries: list[Table], extra: list[Table]) -> None:
        """OptionError, naming the option and the columns there are, for a column no table has; the path's
        columns in every --labels table (or a join); the join keys in the joined table and every --labels one."""
        every = primaries + extra
        checks: list[tuple[str, str | None, str]] = [(n, c, c or "") for n, c in self.named.items()]
        checks += [("where", w.column, str(w)) for w in self.filters]
        for option, column, given in checks:
            if column and not any(column in t.header for t in every):
                _no_column(option, column, given, every)
        for table in primaries:
            for column in self.template.columns:
                if column not in table.header and not any(column in t.header for t in extra):
                    _no_column("path_col", column, options.path_col, [table])
        for join, table in zip(self.joins, extra, strict=True):
            for key in join.keys:
                where = table if key not in table.header else next((t for t in primaries if key not in t.header), None)
                if where is not None:
                    raise OptionError(
                        literal(f"{where.name} has no column {key!r} to join on (")
                        + "{join:name}"
                        + literal(f"); its columns: {', '.join(where.header)}"),
                        join=f"{join.file}:{','.join(join.keys)}",
                    )


def select(options: SourceOptions) -> Selection:
    """The image rows of the ``--labels`` tables, joined and filtered; InputError or OptionError in one line."""
    columns = _Columns.of(options)
    wanted = columns.wanted()
    specs = options.tables()
    coded = label_columns_spec(options.label_cols) if options.label_cols is not None else None
    primaries = [read_table(spec.file, wanted, "labels table", coded) for spec in specs]
    extra = [read_table(join.file, wanted, "joined table", coded) for join in columns.joins]
    columns.check(options, primaries, extra)
    digest = hashlib.sha256()
    for table in primaries + extra:
        digest.update(bytes.fromhex(table.sha256))
    selection = Selection(
        [],
        bool(options.label_sep) or options.label_list or coded is not None,
        _label_column(options, primaries + extra),
        [storable_path(t.name) for t in primaries],
        digest.hexdigest(),
    )
    if coded is not None:
        selection.coded = tuple(storable_path(c) for c in _coded_columns(options, primaries + extra))
    labels = _LabelReader(options, selection, _coded_columns(options, primaries + extra) if coded else ())
    selection.columns = [storable_path(c) for c in dict.fromkeys(c for t in primaries + extra for c in t.header if c)]
    indexes = [_JoinIndex(join, table) for join, table in zip(columns.joins, extra, strict=True)]
    removed = [0] * len(columns.filters)
    unjoined = [0] * len(indexes)
    for spec, table in zip(specs, primaries, strict=True):
        for line, value, missing in _joined(table, indexes):
            verdict = _rejected_by(columns.filters, value)
            key = normalize(columns.template.render(value))
            if verdict is not None:
                removed[verdict] += 1
                if key:
                    selection.filtered_keys.add(key)
                continue
            for j in missing:  # counted for the rows the filters keep: the images it concerns
                unjoined[j] += 1
            if not key:
                selection.no_path += 1
                continue
            selection.rows.append(_image_row(key, table, line, spec.split, value, missing, indexes, options, labels))
    selection.n_rows = len(selection.rows)
    selection.filtered = [(str(w), n) for w, n in zip(columns.filters, removed, strict=True)]
    selection.joined = [(storable_path(t.name), n) for t, n in zip(extra, unjoined, strict=True)]
    selection.ambiguous = [(storable_path(t.name), i.ambiguous_keys) for t, i in zip(extra, indexes, strict=True)]
    return selection


def _image_row(
    key: str,
    table: Table,
    line: int,
    split: str,
    value: dict[str, str],
    missing: list[int],
    indexes: list[_JoinIndex],
    options: SourceOptions,
    labels: _LabelReader,
) -> ImageRow:
    """What one kept row says about its image (text a cache cannot hold as it is made storable)."""

    def cell(column: str | None) -> str:
        return storable_path(value.get(column, "")) if column else ""

    unjoined = ""
    if missing:
        index = indexes[missing[0]]
        why = "no row" if index.by_key.get(index.key_of(value)) is None else "rows that disagree"
        unjoined = f"{why} in {storable_path(index.table.name)} for its {','.join(index.keys)}"
    return ImageRow(
        key,
        storable_path(table.name),
        line,
        storable_path(split) or cell(options.split_col),
        labels.names(value, table.name, line),
        cell(options.patient_col),
        cell(options.study_col),
        cell(options.view_col),
        unjoined,
        labels.codes(value, table.name, line),
        cell(options.annotator_col),
    )


class _LabelReader:
    """A row's labels in the shape the options say: a name, names split by a separator or from a list cell,
    or one code per ``--label-cols`` column (equal code rows shared: CheXpert's 224k rows have few patterns)."""

    def __init__(self, options: SourceOptions, selection: Selection, coded: tuple[str, ...]) -> None:
        self.column = selection.label_col if not coded else None
        self.sep = options.label_sep
        self.as_list = options.label_list
        self.coded = coded
        self.seen: dict[tuple[int, ...], tuple[int, ...]] = {}

    def names(self, value: dict[str, str], table: str, line: int) -> tuple[str, ...]:
        if self.column is None:
            return ()
        cell = value.get(self.column, "")
        if self.as_list:
            try:
                found = list_cell(cell)
            except ValueError as exc:
                hint = f"; rows to leave out: --where '{storable_path(self.column)}!=VALUE'"
                raise InputError(_where(table, line, self.column, cell) + f": {exc}{hint}") from None
            return tuple(sorted({storable_path(name) for name in found}))
        return tuple(storable_path(label) for label in _labels(cell, self.sep))

    def codes(self, value: dict[str, str], table: str, line: int) -> tuple[int, ...]:
        if not self.coded:
            return ()
        out = []
        for column in self.coded:
            cell = value.get(column, "")
            code = CODE_OF.get(cell.strip())
            if code is None:
                raise InputError(
                    _where(table, line, column, cell) + ": a coded label is 1, 0, -1 (or 1.0, 0.0, -1.0) or blank"
                )
            out.append(code)
        row = tuple(out)
        return self.seen.setdefault(row, row)


def _where(table: str, line: int, column: str, cell: str) -> str:
    shown = cell if len(cell) <= 60 else cell[:57] + "..."
    return (
        f"labels table {storable_path(table)} line {line}, column {storable_path(column)!r}: {storable_path(shown)!r}"
    )


def _coded_columns(options: SourceOptions, tables: Sequence[Table]) -> tuple[str, ...]:
    """``--label-cols`` as columns: the names given, or the range in the header of the first table holding it
    (the --labels tables, then the joins: MIMIC's labels are a joined table); OptionError when none does."""
    spec = label_columns_spec(options.label_cols or "")
    for table in tables:
        found = spec.resolve(list(table.header))
        if found is not None and (spec.names or spec.first in table.header):
            return found
    names = ", ".join(dict.fromkeys(name for t in tables for name in t.header if name))
    raise OptionError(
        "{label_cols}: "
        + literal(f"no table has the columns {spec.first!r} to {spec.last!r} in that order; the columns: {names}"),
        label_cols=options.label_cols,
    )


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

    def key_of(self, value: dict[str, str]) -> tuple[str, ...]:
        """The key of a --labels row in this table."""
        return tuple(value.get(key, "") for key in self.keys)


_AMBIGUOUS: tuple[str, ...] = ("\0ambiguous",)


def _joined(table: Table, indexes: list[_JoinIndex]) -> Iterator[tuple[int, dict[str, str], list[int]]]:
    """Each row of a --labels table with the columns of its joined rows (the table's own columns first), and
    the joins that gave it nothing (no row for its key, or rows that disagree)."""
    for line, row in zip(table.lines, table.rows, strict=True):
        value = dict(zip(table.columns, row, strict=True))
        missing = []
        for j, index in enumerate(indexes):
            match = index.by_key.get(index.key_of(value))
            if match is None or match is _AMBIGUOUS:
                missing.append(j)
                continue
            for column, cell in zip(index.table.columns, match, strict=True):
                value.setdefault(column, cell)
        yield line, value, missing


def _rejected_by(filters: Sequence[WhereSpec], value: dict[str, str]) -> int | None:
    """The index of the first --where a row fails, or None when it passes them all."""
    for i, where in enumerate(filters):
        if (value.get(where.column, "") in where.values) != where.keep:
            return i
    return None


def _labels(cell: str, sep: str | None) -> tuple[str, ...]:
    """A label cell as its label names: split on ``sep`` (sorted, blanks dropped), else the cell itself."""
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

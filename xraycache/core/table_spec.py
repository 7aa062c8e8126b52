"""What the table options of a build say, parsed: ``[SPLIT=]FILE``, ``FILE:KEYS``, ``COL=VALUES``, split names.

The options hold plain strings (``--labels test=valid.csv``, ``--join chexpert.csv.gz:subject_id,study_id``,
``--where ViewPosition=PA,AP``) so that the command line, ``xraycache.build`` keywords and the recorded
settings are the same text; this module turns each into the small value the build works with, or an
:class:`~xraycache.OptionError` naming the option.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import OptionError, literal
from .names import split_name_problem

# The names releases give their official splits, and the name a cache stores (the source's is kept too).
SPLIT_SYNONYMS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
_NAME = re.compile(r"[^=/\\]+")
_KEYS = re.compile(r"[^/\\:]+(?:,[^/\\:]+)*")


def split_name(value: str) -> str:
    """The split a cache stores for an official split name: ``validate`` -> ``val``; others as given (stripped)."""
    text = value.strip()
    return SPLIT_SYNONYMS.get(text.lower(), text)


@dataclass(frozen=True)
class TableFile:
    """One ``--labels`` table; ``split`` is the split its images go to (``""``: decided otherwise)."""

    file: str
    split: str = ""


@dataclass(frozen=True)
class JoinSpec:
    """``--join FILE:KEYS``: a table joined to the image rows on the key columns."""

    file: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class WhereSpec:
    """``--where COL=A,B`` (keep rows with one of the values) or ``COL!=A,B`` (keep rows with none of them)."""

    column: str
    values: frozenset[str]
    keep: bool

    def __str__(self) -> str:
        return f"{self.column}{'=' if self.keep else '!='}{','.join(sorted(self.values))}"


@dataclass(frozen=True)
class SplitList:
    """``--split-list SPLIT=FILE``: the images FILE names (one a line) are in SPLIT."""

    split: str
    file: str


@dataclass(frozen=True)
class LabelColumns:
    """``--label-cols A,B,C`` (these columns, in this order) or ``FIRST..LAST`` (the header's columns from FIRST
    to LAST, both included, in the header's order)."""

    names: tuple[str, ...] = ()
    first: str = ""
    last: str = ""

    def resolve(self, header: list[str]) -> tuple[str, ...] | None:
        """The columns in ``header`` order for a range (None when FIRST or LAST is not in it, or LAST comes
        before FIRST); the names as given otherwise."""
        if self.names:
            return self.names
        if self.first not in header or self.last not in header:
            return None
        start, stop = header.index(self.first), header.index(self.last)
        return tuple(header[start : stop + 1]) if start <= stop else None


def label_columns_spec(value: str) -> LabelColumns:
    """``A,B,C`` or ``FIRST..LAST``; OptionError for an empty name or a name given twice."""
    if ".." in value and "," not in value:
        first, _, last = value.partition("..")
        if first.strip() and last.strip():
            return LabelColumns(first=first.strip(), last=last.strip())
    names = tuple(part.strip() for part in value.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise OptionError(
            "{label_cols}: give the label columns as A,B,C (each once) or FIRST..LAST, e.g. "
            "'No Finding..Support Devices'",
            label_cols=value,
        )
    return LabelColumns(names)


def table_file(value: str) -> TableFile:
    """``[SPLIT=]FILE``; a value naming an existing file is a file, whatever it holds."""
    if not value.strip():
        raise OptionError("{labels}: give a table file", labels=value)
    name, sep, rest = value.partition("=")
    if sep and rest and _NAME.fullmatch(name) and not os.path.exists(value):
        return TableFile(rest, _checked_split(name.strip(), "labels", value))
    return TableFile(value)


def join_spec(value: str) -> JoinSpec:
    """``FILE:KEY[,KEY...]``."""
    file, sep, keys = value.rpartition(":")
    if not sep or not file or not _KEYS.fullmatch(keys) or not all(key.strip() for key in keys.split(",")):
        raise OptionError(
            "{join}: give FILE:KEYS, the table and the columns to join on, e.g. "
            "mimic-cxr-2.0.0-chexpert.csv.gz:subject_id,study_id",
            join=value,
        )
    return JoinSpec(file, tuple(key.strip() for key in keys.split(",")))


def where_spec(value: str) -> WhereSpec:
    """``COL=A,B`` or ``COL!=A,B``."""
    column, sep, values = value.partition("=")
    keep = not column.endswith("!")
    column = column.removesuffix("!").strip()
    if not sep or not column:
        raise OptionError("{where}: give COL=VALUES or COL!=VALUES, e.g. ViewPosition=PA,AP", where=value)
    return WhereSpec(column, frozenset(part.strip() for part in values.split(",")), keep)


def split_list(value: str) -> SplitList:
    """``SPLIT=FILE``."""
    name, sep, file = value.partition("=")
    if not sep or not file or not _NAME.fullmatch(name):
        raise OptionError("{split_list}: give SPLIT=FILE, e.g. test=test_list.txt", split_list=value)
    return SplitList(_checked_split(name.strip(), "split_list", value), file)


def _checked_split(name: str, option: str, value: str) -> str:
    """The split an option names, stored as :func:`split_name` gives it; OptionError for names a cache refuses."""
    problem = split_name_problem(split_name(name))
    if problem:
        raise OptionError(f"{{{option}}}: " + literal(f"{name!r} cannot name a split: {problem}"), **{option: value})
    return split_name(name)


def compiled(pattern: str, option: str) -> re.Pattern[str]:
    """A ``--*-pattern`` regular expression, compiled; OptionError naming it when it does not compile."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        message = f"{{{option}}} is not a regular expression: " + literal(str(exc))
        raise OptionError(message, **{option: pattern}) from None

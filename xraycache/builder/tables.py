"""Reading one table file (CSV, TSV or semicolon-separated; plain or gzipped) the way a hostile file can't abuse.

A release's tables are large (MIMIC-CXR's metadata: 377,110 rows) and may be gzipped (MIMIC ships
``.csv.gz``), so a table is streamed: decompressed through a cap on its size (a 1 MB gzip bomb inflating
to terabytes stops at the cap), parsed by Python's ``csv`` with a cap on one cell, and only the columns the
build asks for are kept. The sha256 of the file's bytes as stored is taken on the way, for the rebuild's
check that the table did not change.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import os
import zlib
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..core.errors import DecodeError, InputError
from ..core.files import open_regular
from ..core.table_spec import LabelColumns

MAX_TABLE_BYTES = 1 << 30  # a table, decompressed, larger than this is refused (MIMIC-CXR's metadata is ~100 MB)
MAX_FIELD_CHARS = 1 << 20  # one cell; Python's csv stops at 131,072 by default, with a traceback
MAX_TABLE_ROWS = 2_000_000  # rows of one table: ~600 MB held at most (a 19 KB gzip can hold 10 million)
SNIFF_CHARS = 64 << 10  # read ahead before the first row (the header line is what the delimiter comes from)
DELIMITERS = ",;\t"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Table:
    """The columns a build asked for of one table file, row by row (values stripped of surrounding blanks)."""

    file: Path
    sha256: str  # of the file's bytes as stored (compressed, for a .gz)
    header: tuple[str, ...]  # every column of the file, in its order
    columns: tuple[str, ...]  # the columns kept, in the order asked for
    rows: list[tuple[str, ...]]  # the kept columns' values
    lines: array[int]  # the line of the file where each row starts

    @property
    def name(self) -> str:
        """The file's name, as reports quote it."""
        return self.file.name

    def index(self, column: str) -> int:
        """Where ``column`` is in each row."""
        return self.columns.index(column)


class _Capped(io.RawIOBase):
    """A binary stream read through: hashed (the stored bytes) or capped (DecodeError past ``limit``)."""

    def __init__(self, inner: BinaryIO, limit: int | None, digest: Any) -> None:
        self.inner, self.limit, self.digest, self.count = inner, limit, digest, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise DecodeError(f"more than {self.limit:,} bytes once decompressed, over the limit of a table")
        if self.digest is not None:
            self.digest.update(data)
        buffer[: len(data)] = data
        return len(data)


def read_table(
    file: str | os.PathLike[str], wanted: Collection[str], what: str = "table", more: LabelColumns | None = None
) -> Table:
    """The ``wanted`` columns of the table at ``file`` that it has (the caller checks the ones it needs).

    Text is UTF-8 (a BOM is dropped); bytes that are not keep their value as surrogate escapes, as Python
    names files that are not UTF-8, so such a path still finds its file. ``what`` names the table in errors
    (``labels table``, ``joined table``). InputError, one line, for a file that cannot be read, is over the
    caps, holds a NUL, or has no header. ``more``: label columns kept too, a range of them found in the header.
    """
    return _read(Path(file), wanted, what, more)


def _read(path: Path, wanted: Collection[str], what: str, more: LabelColumns | None) -> Table:
    digest = hashlib.sha256()
    try:
        handle, _ = open_regular(path)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except DecodeError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    with handle:
        stored = io.BufferedReader(_Capped(handle, None, digest))
        compressed = stored.peek(2)[:2] == GZIP_MAGIC
        raw: BinaryIO = gzip.GzipFile(fileobj=stored, mode="rb") if compressed else stored  # type: ignore[assignment]
        text = io.TextIOWrapper(
            io.BufferedReader(_Capped(raw, MAX_TABLE_BYTES, None)), "utf-8-sig", "surrogateescape", newline=""
        )
        previous = csv.field_size_limit(MAX_FIELD_CHARS)
        reader = None
        try:
            head = text.read(SNIFF_CHARS)
            head += text.readline()  # to the end of a line: csv reads line by line
            lines = itertools.chain(io.StringIO(head, newline=""), text)
            reader = csv.reader(lines, delimiter=_delimiter(head))
            table = _parse(path, reader, wanted, what, more)
            while text.read(1 << 20):  # the rest (after a last empty line), so that the digest is of the whole file
                pass
        except csv.Error as exc:
            line = reader.line_num if reader is not None else 1
            if "field larger than field limit" in str(exc):
                raise InputError(
                    f"{what} {path} line {line}: a cell is longer than {MAX_FIELD_CHARS:,} characters "
                    "(the limit of one cell); is it the right file?"
                ) from None
            raise InputError(f"{what} {path} line {line}: {exc}") from None
        except DecodeError as exc:
            raise InputError(f"cannot read {what} {path}: {exc}") from None
        except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or "truncated"
            raise InputError(f"cannot read {what} {path}: {reason}") from None
        finally:
            csv.field_size_limit(previous)
    table.sha256 = digest.hexdigest()
    return table


def _delimiter(head: str) -> str:
    """The delimiter of the header line: the most frequent of comma, semicolon and tab (comma on a tie).

    Only the delimiter is guessed, from the first line alone: the quoting is CSV's (``"``). csv.Sniffer
    also guesses the quote character, and takes ``'`` for one in PadChest's ``"['normal', 'COPD signs']"``
    cells, splitting them; on a hostile head it runs for tens of seconds.
    """
    first = head.lstrip("\r\n").partition("\n")[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], d == ","))


def _parse(
    path: Path, reader: Iterator[list[str]], wanted: Collection[str], what: str, more: LabelColumns | None
) -> Table:
    first = next((record for record in reader if any(cell.strip() for cell in record)), [])  # blank lines before
    header = tuple(cell.strip() for cell in first)
    if not any(header):
        raise InputError(f"{what} {path} is empty: a table starts with a line of column names")
    if more is not None:
        wanted = [*wanted, *(more.resolve(list(header)) or ())]
    twice = sorted({name for name in header if name and header.count(name) > 1})
    if twice and any(name in wanted for name in twice):
        raise InputError(f"{what} {path} has two columns named {twice[0]!r}; which one is meant is not clear")
    columns = tuple(name for name in dict.fromkeys(wanted) if name in header)
    where = [header.index(name) for name in columns]
    rows: list[tuple[str, ...]] = []
    lines = array("q")
    line = 2
    intern = _Interner()
    line = reader.line_num + 1  # type: ignore[attr-defined]
    for record in reader:
        if record:  # csv gives [] for a blank line
            size = len(record)
            row = tuple(intern(record[i].strip()) if i < size else "" for i in where)
            if any("\0" in cell for cell in row):
                raise InputError(f"{what} {path} line {line}: a cell holds a NUL character; is it the right file?")
            rows.append(row)
            lines.append(line)
            if len(rows) > MAX_TABLE_ROWS:
                raise InputError(
                    f"{what} {path} has more than {MAX_TABLE_ROWS:,} rows, over the limit of a table "
                    "(MIMIC-CXR's largest has 377,110); is it the right file?"
                )
        line = reader.line_num + 1  # type: ignore[attr-defined]
    if not rows:
        raise InputError(f"{what} {path} has no rows below its line of column names")
    return Table(path, "", header, columns, rows, lines)


class _Interner:
    """One string object for values that repeat (views, splits, label codes), so a 377k-row table stays small.

    Long values (paths, ids) are kept as they are: they rarely repeat, and a dict of them would double them.
    """

    LONG = 24

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        if len(value) > self.LONG:
            return value
        return self.seen.setdefault(value, value)

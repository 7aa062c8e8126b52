"""The package's own exceptions, and the one policy for files a build cannot take.

Each exception carries a one-line message a user can act on. Where Python has an exception for the same
thing, the package's is also that one (``KeyNotFoundError`` is a ``KeyError``, ``IndexOutOfRangeError`` an
``IndexError``, ``CacheNotFoundError`` a ``FileNotFoundError``), so ``except KeyError``, ``dict.get``-style
lookups and ``for x in images`` work as they do on h5py and NumPy objects, while the command line still
prints the one line. A file that cannot be taken, at any stage (the scan, the labels CSV, the decoder),
becomes one ``Skipped`` record in a ``SkipLog``; the log is the single place that decides, for ``strict``
builds, that any such file fails the build.
"""

from __future__ import annotations

import errno
from typing import Any, NamedTuple, SupportsIndex, overload


class XrayCacheError(Exception):
    """Base class: every error the package raises on purpose is one of these.

    Raised in a PyTorch DataLoader worker, it is raised again in the training process by the DataLoader,
    which makes it anew from one message holding the worker's whole traceback; the error keeps its own
    one line (the traceback's last) instead.
    """

    exit_code = 2

    def __init__(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_own_line(args[0], type(self).__name__),)
        super().__init__(*args)

    def for_cli(self) -> str:
        """The message as the command line says it (options by their ``--flag``)."""
        return str(self)


def _own_line(message: str, name: str) -> str:
    """``message``, or the error's own line when it is a traceback a DataLoader re-raises from a worker
    ("Caught NAME in DataLoader worker process 1.\nOriginal Traceback ...\npackage.NAME: the line")."""
    if not message.startswith(f"Caught {name} ") or "\nOriginal Traceback" not in message:
        return message
    last = message.rstrip("\n").rsplit("\n", 1)[-1]
    qualified, _, own = last.partition(": ")
    return own if own and qualified.endswith(name) else message


class InputError(XrayCacheError):
    """The source folder, the output path or an argument is not usable (CLI exit code 2)."""


class KeyNotFoundError(InputError, KeyError):
    """A split, column or label the cache does not have; also a ``KeyError``."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0]) if self.args else ""


class IndexOutOfRangeError(InputError, IndexError):
    """An index past either end of a split; also an ``IndexError``, which ends ``for image in split.images``."""


class CacheNotFoundError(InputError, FileNotFoundError):
    """No file at the path given to open; also a ``FileNotFoundError`` (``errno.ENOENT``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOENT


class _NamesOptions(XrayCacheError):
    """An error whose message names build options: by keyword (``jobs=0``) for Python callers, by flag
    (``--jobs 0``) on the command line. ``template`` holds ``{name}`` for an option with its value,
    ``{name:bare}`` for the same without quotes on the command line (as typed there) and ``{name:name}`` for
    the option alone, the names being the keys of ``options``; other text goes through :func:`literal`."""

    def __init__(self, template: str, **options: Any) -> None:
        self.template, self.options = template, options
        super().__init__(self._render(cli=False))

    def _render(self, cli: bool) -> str:
        from .options import flag_for  # the flags are the options' own definitions

        return self.template.format(**{k: _Named(k, v, flag_for(k) if cli else None) for k, v in self.options.items()})

    def for_cli(self) -> str:
        return self._render(cli=True)

    def __reduce__(self) -> tuple[Any, ...]:  # made again from its template: the message is not one
        return (_remade, (type(self), self.template, self.options))


def _remade(cls: type[_NamesOptions], template: str, options: dict[str, Any]) -> _NamesOptions:
    """An option-naming error unpickled (``pickle`` would pass its rendered message as the template)."""
    return cls(template, **options)


class OptionError(_NamesOptions, InputError):
    """A build option's value is not usable, or options that do not go together (CLI exit code 2)."""


class StrictError(_NamesOptions):
    """``strict=True`` and some files could not be taken (CLI exit code 1)."""

    exit_code = 1


class _Named:
    """One option in an :class:`OptionError`: ``jobs=0`` / ``jobs``, or ``--jobs 0`` / ``--jobs``."""

    def __init__(self, keyword: str, value: Any, flag: str | None) -> None:
        self.keyword, self.value, self.flag = keyword, value, flag

    def __format__(self, spec: str) -> str:
        if self.flag is None:
            return self.keyword if spec == "name" else f"{self.keyword}={self.value!r}"
        if spec == "name" or self.value is True:  # a switch is its flag alone
            return self.flag
        return f"{self.flag} {self.value}" if spec == "bare" else f"{self.flag} {self.value!r}"


def literal(text: str) -> str:
    """``text`` as a part of an :class:`OptionError` template: its braces kept as they are."""
    return text.replace("{", "{{").replace("}", "}}")


class NotACacheError(XrayCacheError):
    """A file that is not an xraycache HDF5 file, or a damaged one."""


class CacheReplacedError(InputError):
    """The cache a reader opened was replaced (rebuilt) at its path since: reading on would mix two builds."""


class DecodeError(XrayCacheError):
    """One file could not be turned into an image; the message is the reason recorded for it."""


class Skipped(NamedTuple):
    """A file the build did not take: its path relative to the source folder, its split, and why.

    A tuple (``path, split, reason = row``) that also reads by name (``row["reason"]``), as the rows of
    ``/skipped`` and of ``--json`` do.
    """

    path: str
    split: str
    reason: str

    @overload
    def __getitem__(self, key: str) -> str: ...
    @overload
    def __getitem__(self, key: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[str, ...]: ...
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self._fields:
                raise KeyError(key)
            return getattr(self, key)
        return tuple.__getitem__(self, key)

    def as_dict(self) -> dict[str, str]:
        """``{"path", "split", "reason"}``: the JSON form."""
        return {"path": self.path, "split": self.split, "reason": self.reason}


class SkipLog:
    """Every file a build could not take, from every stage, in the order met; ``strict`` makes any fatal.

    Stages call the log with each file they skip (``log(Skipped(...))``); the build calls ``check()``
    once, before anything is committed, so a strict build fails without writing OUT.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.entries: list[Skipped] = []

    def __call__(self, skipped: Skipped) -> None:
        self.entries.append(skipped)

    def extend(self, rows: list[Skipped]) -> None:
        """Record several skipped files at once (e.g. those of one shard)."""
        self.entries.extend(rows)

    def check(self) -> None:
        """StrictError listing the first few files when the build is strict and any file was skipped."""
        if not (self.strict and self.entries):
            return
        listed = "; ".join(f"{s.path}: {s.reason}" for s in self.entries[:5])
        more = f" (and {len(self.entries) - 5} more)" if len(self.entries) > 5 else ""
        detail = literal(f": {len(self.entries)} file(s) could not be taken: {listed}{more}")
        raise StrictError("{strict}" + detail, strict=True)

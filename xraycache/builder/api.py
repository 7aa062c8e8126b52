"""``xraycache.build``: the public entry point of a build, every option an explicit keyword.

The options are defined once (``core/options.py``); this module gives ``build`` a signature and numpydoc
Parameters generated from them, so ``help(xraycache.build)``, ``inspect`` and notebooks list every option,
and a ``TypedDict`` (``core/build_settings.py``) that editors and type checkers read. The work itself is
``pipeline.run_build``.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ..core.options import BuildOptions, hints_of, info_of
from .job import ProgressCallback
from .pipeline import run_build
from .report import BuildReport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..core.build_settings import BuildSettings


def build(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: BuildOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_scan: Callable[[int], None] | None = None,
    dry_run: bool = False,
    command: str | None = None,
    **settings: Unpack[BuildSettings],
) -> BuildReport:
    """Build (or bring up to date) one HDF5 cache of every readable image under ``src``.

        If ``out`` holds a cache of the same ``src`` built with the same settings, only new and changed files
        are decoded, and nothing is written when nothing changed; ``overwrite=True`` forces a cold build.

        Parameters
        ----------
        src : str or os.PathLike
            The dataset folder, e.g. ``chest_xray`` holding ``train/NORMAL/*.jpeg``.
        out : str or os.PathLike
            The HDF5 file to write, e.g. ``train.h5``.
        options : BuildOptions, optional
            Every option in one object; the keywords below change it where both are given.
        progress : callable, optional
            ``progress(n)`` is called as ``n`` more images are done.
        on_scan : callable, optional
            ``on_scan(total)`` is called once, after the scan, with the number of files the build goes through.
        dry_run : bool, default False
            Scan and report what the build would do, without decoding or writing.
        command : str, optional
            The command line recorded in the file (default: this process's).
    OPTIONS: every option of BuildOptions as a keyword, listed here when the module loads.
        Returns
        -------
        BuildReport
            What the build did: counts per split and label, skipped files, mode, timings.

        Raises
        ------
        OptionError
            An option's value is not usable (an InputError; the message names the keyword).
        InputError
            Unusable paths or layouts, an ``out`` built with other settings, a write error (``out`` is then
            untouched).
        StrictError
            ``strict=True`` and some file could not be taken (``out`` is then not written).
        TypeError
            An unknown keyword.
    """
    if options is not None and not isinstance(options, BuildOptions):
        raise TypeError(
            f"options must be a BuildOptions, not {type(options).__name__}; give the others as keywords, e.g. size=256"
        )
    base = options if options is not None else BuildOptions()
    return run_build(
        src, out, base.replace(**settings), progress=progress, on_scan=on_scan, dry_run=dry_run, command=command
    )


OPTIONS_LINE = "    OPTIONS: every option of BuildOptions as a keyword, listed here when the module loads."


def _with_options(function: Callable[..., BuildReport]) -> None:
    """Give ``function`` (:func:`build`) a signature and Parameters that list every option of
    :class:`BuildOptions` as a keyword-only argument, for ``help()``, ``inspect`` and notebooks."""
    signature = inspect.signature(function)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    lines = []
    for part, field in BuildOptions.fields():
        hint = hints_of(BuildOptions.PARTS[part])[field.name]
        fixed.append(
            inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=hint)
        )
        lines += [
            f"        {field.name} : {_type_text(hint)}, default {field.default!r}",
            f"            {info_of(field).help}",
        ]
    function.__signature__ = signature.replace(parameters=fixed)  # type: ignore[attr-defined]
    function.__doc__ = (function.__doc__ or "").replace(OPTIONS_LINE, "\n".join(lines))


def _type_text(hint: Any) -> str:
    """A type hint as numpydoc says it: ``int``, ``str or None``, ``{'a', 'b'}``."""
    if typing.get_origin(hint) is Literal:
        return "{" + ", ".join(repr(a) for a in typing.get_args(hint)) + "}"
    args = typing.get_args(hint)
    if args:
        return " or ".join(_type_text(a) for a in args)
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


_with_options(build)

"""Usage errors as one line, and help without noise: the command and group classes every command uses.

typer prints a usage error as a 5-line box ("Value error, 'strech' is not one of ..."), shows ``<bool>``
beside every flag and ``{src} {out}`` in the usage line. These classes print ``error: --fit: 'strech' is
not one of stretch, pad, crop`` (exit 2, like the package's own errors) and ``[OPTIONS] SRC OUT``.
They work the same whether typer vendors click (typer >= 0.2x) or uses the click package.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# click's exceptions module: typer >= 0.2x carries its own copy of click, older typer uses the click package
_click_errors: Any = sys.modules[typer.BadParameter.__module__]


def _tidy_params(params: list[Any]) -> list[Any]:
    """Flags show no type (``<bool>``); arguments are named in capitals (SRC, OUT) in help and errors."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif getattr(param, "param_type_name", "") == "argument" and param.metavar is None and param.name:
            param.metavar = param.name.upper()
    return params


def _tidy_usage(pieces: list[str]) -> list[str]:
    """``{SRC}`` -> ``SRC``: a required argument needs no brackets (optional ones keep ``[...]``)."""
    return [re.sub(r"^\{(.*)\}(\.\.\.)?$", r"\1\2", piece) for piece in pieces]


class TidyCommand(TyperCommand):
    """A command whose help shows no ``<bool>`` beside flags and whose usage line reads ``SRC OUT``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _tidy_usage(super().collect_usage_pieces(ctx))


class TidyGroup(TyperGroup):
    """A command group with tidy help (as :class:`TidyCommand`) that prints usage errors as one line."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _tidy_usage(super().collect_usage_pieces(ctx))

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone = kwargs.get("standalone_mode", True)
        kwargs["standalone_mode"] = False  # errors come back here, to be printed as one line
        if not standalone:
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **kwargs)
        except _click_errors.ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":
                print(f"error: {usage_error_line(exc)}", file=sys.stderr)
            elif exc.format_message():  # plain (not rich) help comes back as the message; rich help is printed
                exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _param_name(param: Any) -> str:
    """``--fit`` for an option (its longest flag), ``SRC`` for an argument."""
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("--")] or list(getattr(param, "opts", ()))
    if getattr(param, "param_type_name", "") == "argument" or not opts:
        return str(param.metavar or param.name or "").upper()
    return max(opts, key=len)


def usage_error_line(exc: Exception) -> str:
    """One line for a usage error: ``--fit: 'strech' is not one of stretch, pad, crop``."""
    message = getattr(exc, "message", None) or str(exc)
    message = re.sub(r"^Value error, ", "", message.strip()).rstrip(".")
    message = re.sub(  # "is not one of 'a', 'b'" -> "is not one of a, b"
        r"(is not one of |one of )(.*)$", lambda m: m.group(1) + m.group(2).replace("'", ""), message
    )
    param = getattr(exc, "param", None)
    is_missing = isinstance(exc, _click_errors.MissingParameter)
    if isinstance(exc, _click_errors.BadParameter) and param is not None and not is_missing:
        line = f"{_param_name(param)}: {message}"
    else:
        line = exc.format_message().strip().rstrip(".") if hasattr(exc, "format_message") else message
    line = " ".join(line.split())  # one line, whatever the message held
    ctx = getattr(exc, "ctx", None)
    if is_missing or not isinstance(exc, _click_errors.BadParameter):
        path = ctx.command_path if ctx is not None else "xraycache"
        line += f" (see '{path} --help')"
    return line

"""Names from a source folder or a cache made safe for where they go: a terminal, rich markup, matplotlib, a CSV cell.

Folder, file, label and patient names come from whoever made the source folder or the cache, so each
destination gets the escaper that makes it text there and nothing else:

- :func:`terminal`: control characters (C0, DEL, C1, so ESC sequences, OSC titles, links and clipboard
  writes), newlines, tabs and Unicode line and direction marks become visible backslash escapes
  (``\\x1b``, ``\\n``, ``\\t``, ``\\u202e``) and a backslash becomes ``\\\\``; :func:`unterminal` undoes it,
  so a path ``xraycache ls`` printed is taken back by ``show image --path``.
- :func:`markup`: text inside rich console markup, with its ``[tags]`` shown rather than obeyed (what
  ``rich.markup.escape`` does, here without importing rich).
- :func:`mathtext`: text matplotlib draws, its ``$`` shown rather than starting mathtext, its control
  characters shown as :func:`terminal` shows them.
- :func:`csv_cell`: a text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR
  first) gets a leading ``'`` (OWASP's advice); numbers stay numbers.
"""

from __future__ import annotations

import re

_SHORT = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNSHORT = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
# C0, DEL, C1; Unicode line/paragraph separators and the marks that reorder text on screen
_CONTROL = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_TERMINAL = re.compile(f"[\\\\{_CONTROL}]")
_SHOWN_CONTROL = re.compile(f"[{_CONTROL}]")
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|(.)|$)", re.DOTALL)
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _visible(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: str, reversible: bool = True) -> str:
    """``text`` with every character a terminal would act on shown as a backslash escape.

    ``reversible`` (the default, for names a user may paste back) also doubles each backslash, so that
    :func:`unterminal` gives the name back exactly; ``False`` leaves backslashes as they are (for messages
    that already quote names with ``repr``).
    """
    pattern = _TERMINAL if reversible else _SHOWN_CONTROL
    return pattern.sub(lambda match: _visible(match.group()), text)


def unterminal(text: str) -> str:
    """The name :func:`terminal` escaped as ``text``; ValueError when ``text`` holds a backslash it never writes."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        if code:
            return chr(int(code, 16))
        char = match.group(3)
        if char is None or char not in _UNSHORT:
            raise ValueError(f"{match.group()!r} is not an escape xraycache writes")
        return _UNSHORT[char]

    return _ESCAPE.sub(one, text)


def markup(text: str) -> str:
    """``text`` to place in rich console markup: its ``[tags]`` printed as written, never obeyed."""

    def escape_tag(match: re.Match[str]) -> str:
        backslashes, tag = match.groups()
        return f"{backslashes}{backslashes}\\{tag}"

    escaped = _MARKUP_TAG.sub(escape_tag, text)
    if escaped.endswith("\\") and not escaped.endswith("\\\\"):
        return escaped + "\\"
    return escaped


def shown(text: object) -> str:
    """A name as the command line prints it inside rich markup: :func:`terminal`, then :func:`markup`."""
    return markup(terminal(str(text)))


def mathtext(text: str) -> str:
    """``text`` for a matplotlib Text: drawn as written, never as mathtext (each ``$`` escaped), its control
    characters shown as in :func:`terminal` (a font has no glyph for them, a newline would forge a line)."""
    return terminal(text, reversible=False).replace("$", "\\$")


def csv_cell(text: str) -> str:
    """A text cell of an exported CSV: ``'`` before a value a spreadsheet would run as a formula.

    A number (``-1``, ``+3.5``) is left as it is: it is data, and a spreadsheet reads it as a number.
    """
    if not text.startswith(_FORMULA_START) or _is_number(text):
        return text
    return "'" + text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text

"""What a label cell of a table says: a coded value (CheXpert's ``1.0`` / ``0.0`` / ``-1.0`` / blank) or a list
of names (PadChest's ``['pneumonia', 'infiltrates']``), read by rules small enough to trust with any input.

A list cell is parsed here, never by ``eval`` or ``ast.literal_eval``: a flat list of quoted strings, in one
pass over the characters, with at most :data:`MAX_LIST_ITEMS` items; anything else is a ``ValueError``
naming what was wrong (the caller adds the table, line and column).
"""

from __future__ import annotations

from ..core.schema import CODE_MISSING, CODE_NEGATIVE, CODE_POSITIVE, CODE_UNCERTAIN

# The values a coded label cell may hold (surrounding blanks stripped): nothing else is guessed.
CODE_OF: dict[str, int] = {
    "1": CODE_POSITIVE,
    "1.0": CODE_POSITIVE,
    "0": CODE_NEGATIVE,
    "0.0": CODE_NEGATIVE,
    "-1": CODE_UNCERTAIN,
    "-1.0": CODE_UNCERTAIN,
    "": CODE_MISSING,
}
# When rows of one image code a label differently, the union keeps the strongest statement:
# positive, then uncertain, then negative, then missing.
_RANK = {CODE_POSITIVE: 3, CODE_UNCERTAIN: 2, CODE_NEGATIVE: 1, CODE_MISSING: 0}
MAX_LIST_ITEMS = 1_000  # names in one list cell (PadChest's longest has 14)


def union_codes(rows: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The codes of several rows as one: per label the strongest (positive > uncertain > negative > missing)."""
    if len(rows) == 1:
        return rows[0]
    return tuple(max(column, key=_RANK.__getitem__) for column in zip(*rows, strict=True))


def list_cell(cell: str) -> list[str]:
    """``['a', "b, c", 'd\\'e']`` -> ``['a', 'b, c', "d'e"]``: a flat list of quoted strings, each stripped of
    surrounding blanks (empty ones dropped); a blank cell or ``[]`` is no name. ValueError otherwise."""
    text = cell.strip()
    if not text:
        return []
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError("a list cell is [ ... ] of quoted names, e.g. ['pneumonia', 'infiltrates']")
    out: list[str] = []
    i, end = 1, len(text) - 1
    expect_item = True
    items = 0
    while True:
        while i < end and text[i].isspace():
            i += 1
        if i >= end:
            if not expect_item or not items:  # "[]", or after a last item
                break
            raise ValueError("a list cell ends with a comma")
        if not expect_item:
            if text[i] != ",":
                raise ValueError(f"a list cell has {text[i]!r} where a comma belongs")
            i += 1
            expect_item = True
            continue
        quote = text[i]
        if quote not in "'\"":
            raise ValueError("a list cell's names are quoted ('name' or \"name\")")
        i += 1
        chars: list[str] = []
        while i < end and text[i] != quote:
            if text[i] == "\\" and i + 1 < end:  # a backslash keeps the next character (a quote, say)
                i += 1
            chars.append(text[i])
            i += 1
        if i >= end:
            raise ValueError("a list cell has a name whose quote is not closed")
        i += 1
        items += 1
        name = "".join(chars).strip()
        if name:
            out.append(name)
        if len(out) > MAX_LIST_ITEMS:
            raise ValueError(f"a list cell of more than {MAX_LIST_ITEMS:,} names")
        expect_item = False
    return out

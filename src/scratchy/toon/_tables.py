"""Token and table helpers of the TOON decoder.

Quoting-aware splitting of a line, and the row parsers and object builders compiled
once per table header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from ._common import DELIMITERS

__all__ = [
    "LITERALS",
    "NOT_PLAIN",
    "ROW_CELL",
    "builder",
    "cell_kind",
    "fast_row",
    "find_unquoted",
    "scanstring",
    "split_cells",
]

scanstring: Any = json.decoder.scanstring  # C accelerated
NOT_PLAIN = '"-0123456789 ['  # first characters of tokens that may not be plain strings
LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
IN_QUOTES = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?'
# Prefix of a line up to the first occurrence of a character outside quotes.
UNQUOTED_PREFIX = {
    c: re.compile(f'[^"{re.escape(c)}]*+(?:{IN_QUOTES}[^"{re.escape(c)}]*+)*+', re.DOTALL)
    for c in (":", "[", *DELIMITERS)
}
CELLS = {
    d: re.compile(
        f'([^"{re.escape(d)}]*+(?:{IN_QUOTES}[^"{re.escape(d)}]*+)*+)({re.escape(d)}?)', re.DOTALL
    )
    for d in DELIMITERS
}
QUOTED_CELL = '("[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+")'
ROW_CELL = {d: f'("[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+"|[^"{re.escape(d)}]*+)' for d in DELIMITERS}


def find_unquoted(text: str, char: str) -> int:
    """Index of the first ``char`` outside double quotes, or -1."""
    if '"' not in text:
        return text.find(char)
    end = UNQUOTED_PREFIX[char].match(text).end()  # type: ignore[union-attr]
    return end if end < len(text) else -1


def split_cells(text: str, delim: str) -> list[str]:
    if '"' not in text:
        return text.split(delim)
    pairs = CELLS[delim].findall(text)
    if len(pairs) > 1 and not pairs[-2][1]:
        pairs.pop()  # the empty match findall reports at the end of the text
    return [cell for cell, _ in pairs]


def materialize(fields: tuple[Any, ...], cells: Iterator[Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, nested in fields:
        obj[name] = next(cells) if nested is None else materialize(nested, cells)
    return obj


def builder(
    fields: tuple[Any, ...], quoted: frozenset[int] = frozenset()
) -> tuple[Callable[[Any], dict[str, Any]], int]:
    """Compile a field list into a function building one object from row cells.

    Cells whose index is in ``quoted`` are raw quoted tokens, decoded on the way.
    The generated source only contains integers (names are looked up in a tuple),
    so a field list cannot inject code. Returns the function and the row width.
    """
    names: list[str] = []

    def expr(fields: tuple[Any, ...], pos: int, level: int) -> tuple[str, int]:
        if level > 16:
            raise RecursionError
        parts = []
        for name, nested in fields:
            names.append(name)
            if nested is None:
                cell = f"S(c[{pos}], 1, False)[0]" if pos in quoted else f"c[{pos}]"
                parts.append(f"N[{len(names) - 1}]: {cell}")
                pos += 1
            else:
                key = len(names) - 1
                sub, pos = expr(nested, pos, level + 1)
                parts.append(f"N[{key}]: {sub}")
        return "{" + ", ".join(parts) + "}", pos

    try:
        body, width = expr(fields, 0, 0)
        if width <= 256:
            scope = {"N": tuple(names), "S": scanstring}
            return eval(f"lambda c: {body}", scope), width  # noqa: S307
    except RecursionError:
        pass
    width = sum(1 for _ in leaves(fields))
    return lambda cells: materialize(fields, iter(cells)), width


def fast_row(kinds: list[str], delim: str, fields: tuple[Any, ...]) -> list[Any]:
    """A fast path for rows whose cells have the given kinds: [regex, builder, tail, 0].

    Kinds: "q" for a quoted token, "p" for a plain string (not a keyword or a number,
    no surrounding spaces; in the first column also no colon, which would end the
    table). When only the last cell is quoted (``tail``), the regex matches the plain
    cells and their delimiters and the caller decodes the last cell with the JSON
    scanner; otherwise it matches the whole row and the builder decodes quoted cells.
    A row that does not fit takes the general path.
    """
    d = re.escape(delim)
    cells = []
    for k, kind in enumerate(kinds):
        if kind == "q":
            cells.append(QUOTED_CELL)
        else:
            stop = d if k else d + ":"  # a colon in the first cell ends the table
            keyword = f"(?!(?:true|false|null)(?:{d}|\\Z))"
            cells.append(f'{keyword}([^"\\-0-9 \\[{stop}][^"{stop}]*+)(?<! )')
    quoted = frozenset(k for k, kind in enumerate(kinds) if kind == "q")
    if quoted == {len(kinds) - 1}:
        prefix = "".join(cell + d for cell in cells[:-1]) + '(?=")'
        return [re.compile(prefix, re.DOTALL), builder(fields)[0], True, 0]
    return [re.compile(d.join(cells), re.DOTALL), builder(fields, quoted)[0], False, 0]


def cell_kind(cell: str, first: bool) -> str | None:
    if len(cell) >= 2 and cell[0] == '"' and cell[-1] == '"':
        return "q"
    if (
        cell
        and cell[0] not in NOT_PLAIN
        and cell[-1] != " "
        and cell not in LITERALS
        and '"' not in cell
        and not (first and ":" in cell)
    ):
        return "p"
    return None


def leaves(fields: tuple[Any, ...]) -> Iterator[str]:
    for name, nested in fields:
        if nested is None:
            yield name
        else:
            yield from leaves(nested)

"""A fast, conformant TOON (Token-Oriented Object Notation) codec.

Follows the TOON specification 4.4, the version implemented by the reference Python
package ``toon-format`` 1.2.0 and by ``@toon-format/toon`` 4.4.0, and passes the
``toon-format/spec`` conformance fixtures (spec 4.0 suite) with one deliberate
exception: the 4 optional non-strict "malformed header falls back to a literal key"
decode cases (``key[]: 1,2``, ``foo[2]extra: a,b``, ...) are rejected with
:class:`ToonDecodeError`, as spec 4.4 and both reference implementations do.

Choices:

* :func:`dumps` output is byte-identical to ``toon_format.dumps`` for JSON values
  (no trailing newline). Uniform arrays of objects become tabular arrays (including
  nested field groups such as ``tool_calls[1]{id,type,function{name,arguments}}:``),
  objects of uniform objects use the keyed tabular form (spec 9.5), and everything
  else uses list items (``- role: user``). Numbers are canonical: ``-0.0`` -> ``0``,
  integral floats below 1e21 are written as integers, other magnitudes outside
  [1e-6, 1e21) use exponent notation (``1e+21``); NaN and infinities become ``null``.
* Values are expected to be JSON data (dict with str keys, list, str, int, float,
  bool, None). Anything else (tuples, sets, non-str keys, str/int subclasses such as
  enums, dates, UUIDs, paths, dataclasses, pydantic models) is first normalized the
  way ``toon_format`` does, on a slower path; unsupported types raise ``TypeError``.
  Strings with unpaired surrogates raise ``ValueError``.
* :func:`loads` is strict by default (spec 14): declared lengths and row widths must
  match, indentation must be a multiple of ``indent`` without tabs, duplicate keys
  and blank lines inside arrays are errors. ``strict=False`` relaxes exactly what
  the reference relaxes. ``-0`` decodes to ``0``; numbers with a fraction or an
  exponent decode to ``float``; tokens outside the number grammar (``05``, ``+1``,
  ``.5``) stay strings. Comment lines (``# ...``) and a BOM are skipped.
* Key folding / path expansion are not part of spec 4.4 and are not implemented.

Errors raise :class:`ToonDecodeError` (a ``ValueError``) with ``.line`` (1-based) and
``.reason``; ``str(error)`` is ``"line N: reason"``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from itertools import repeat
from operator import itemgetter, sub
from pathlib import PurePath
from typing import Any
from uuid import UUID

__all__ = ["TOON_SPEC_VERSION", "ToonDecodeError", "dumps", "loads"]

TOON_SPEC_VERSION = "4.4"

_DELIMITERS = (",", "\t", "|")


class ToonDecodeError(ValueError):
    """A TOON document could not be decoded. ``line`` is 1-based (or None)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)

    def __reduce__(self) -> tuple[type[ToonDecodeError], tuple[str, int | None]]:
        return type(self), (self.reason, self.line)


def _check_indent(indent: int) -> int:
    if isinstance(indent, bool) or not isinstance(indent, int):
        raise TypeError(f"indent must be an int, not {type(indent).__name__}")
    if indent < 1:
        raise ValueError(f"indent must be at least 1, got {indent}")
    return indent


# ---------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------

_encode_basestring: Any = json.encoder.encode_basestring  # C accelerated
_UNQUOTED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMERIC_LIKE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SPECIAL = {d: re.compile('[:"\\\\\\[\\]{}\\x00-\\x1f' + re.escape(d) + "]") for d in _DELIMITERS}
_JSON_ONLY_ESCAPE = re.compile(r"\\[bf]")
_CONTROL = re.compile('[\\\\"\\x00-\\x1f]')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_PRIMITIVES = frozenset((str, int, float, bool, type(None)))
_KEYWORDS = frozenset(("true", "false", "null"))


class _Renormalize(Exception):
    """Raised by the fast encoder when it meets a value outside plain JSON data."""


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _quote(value: str) -> str:
    quoted: str = _encode_basestring(value)
    if _JSON_ONLY_ESCAPE.search(quoted) is not None:  # json writes \b and \f; TOON cannot
        return '"' + _CONTROL.sub(_escape_char, value) + '"'
    return quoted


def _format_decimal(value: Decimal) -> str:
    if not value:
        return "0"
    if Decimal("1e-6") <= abs(value) < Decimal("1e21"):
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits)).rstrip("0")
    exponent += len(digits) - 1
    if len(mantissa) > 1:
        mantissa = f"{mantissa[0]}.{mantissa[1:]}"
    return f"{'-' if sign else ''}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def _format_float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    if value.is_integer() and -1e21 < value < 1e21:
        return str(int(value))
    text = repr(value)
    return text if "e" not in text else _format_decimal(Decimal(text))


def _encode(root: Any, indent: int, delim: str) -> str:  # noqa: C901 - one closure scope
    unit = " " * indent
    sym = "" if delim == "," else delim
    lines: list[str] = []
    emit = lines.append
    pads = [""]
    keys: dict[str, str] = {}
    special = _SPECIAL[delim].search
    numeric_like = _NUMERIC_LIKE.fullmatch
    quote = _quote

    def pad(depth: int) -> str:
        while len(pads) <= depth:
            pads.append(pads[-1] + unit)
        return pads[depth]

    def string(s: str) -> str:
        if (
            not s
            or s[0] in " \t-#"
            or s[-1] in " \t"
            or special(s) is not None
            or (s[0] in "0123456789+" and numeric_like(s) is not None)
            or (len(s) <= 5 and s in _KEYWORDS)
        ):
            return quote(s)
        return s

    def key(k: str) -> str:
        if type(k) is not str:
            raise _Renormalize
        encoded = k if _UNQUOTED_KEY.fullmatch(k) else quote(k)
        keys[k] = encoded
        return encoded

    def prim(v: Any) -> str:
        t = type(v)
        if t is str:
            return string(v)
        if v is None:
            return "null"
        if t is bool:
            return "true" if v else "false"
        if t is int:
            return int.__repr__(v)
        if t is float:
            return _format_float(v)
        raise _Renormalize

    def shape(objs: list[Any]) -> tuple[Any, ...] | None:
        """Shared field list of uniform objects (spec 9.3), or None."""
        first = objs[0]
        if type(first) is not dict or not first:
            return None
        names = first.keys()
        size = len(names)
        for obj in objs:
            if type(obj) is not dict or len(obj) != size or obj.keys() != names:
                return None
        fields = []
        for name in names:
            column = [obj[name] for obj in objs]
            for v in column:
                if type(v) not in _PRIMITIVES:
                    nested = shape(column)
                    if nested is None:
                        return None
                    fields.append((name, nested))
                    break
            else:
                fields.append((name, None))
        return tuple(fields)

    def leaves(obj: dict[str, Any], fields: tuple[Any, ...], out: list[Any]) -> list[Any]:
        for name, nested in fields:
            if nested is None:
                out.append(obj[name])
            else:
                leaves(obj[name], nested, out)
        return out

    def field_list(fields: tuple[Any, ...]) -> str:
        parts = [
            (keys.get(name) or key(name)) + ("" if nested is None else field_list(nested))
            for name, nested in fields
        ]
        return "{" + delim.join(parts) + "}"

    def row(obj: dict[str, Any], fields: tuple[Any, ...], flat: list[str] | None) -> str:
        values = [obj[n] for n in flat] if flat is not None else leaves(obj, fields, [])
        return delim.join(map(prim, values))

    def keyed(pre: str, k: str, obj: dict[str, Any], fields: tuple[Any, ...], depth: int) -> None:
        emit(f"{pre}{k}[{len(obj)}:{sym}]{field_list(fields)}:")
        p = pad(depth + 1)
        flat = [n for n, nested in fields if nested is None]
        flat_or_none = flat if len(flat) == len(fields) else None
        for name, value in obj.items():
            emit(f"{p}{keys.get(name) or key(name)}: {row(value, fields, flat_or_none)}")

    def array(pre: str, k: str, arr: list[Any], depth: int, tabular: bool) -> None:
        head = f"{pre}{k}[{len(arr)}{sym}]"
        for v in arr:
            if type(v) not in _PRIMITIVES:
                break
        else:
            emit(f"{head}: {delim.join(map(prim, arr))}")
            return
        fields = shape(arr) if tabular else None
        if fields is not None:
            emit(f"{head}{field_list(fields)}:")
            p = pad(depth + 1)
            flat = [n for n, nested in fields if nested is None]
            flat_or_none = flat if len(flat) == len(fields) else None
            for obj in arr:
                emit(p + row(obj, fields, flat_or_none))
            return
        emit(head + ":")
        depth += 1
        p = pad(depth)
        for v in arr:
            t = type(v)
            if t is dict:
                if v:
                    obj_fields(v, depth + 1, p + "- ")
                else:
                    emit(p + "-")
            elif t is list:
                if v:
                    array(p + "- ", "", v, depth, False)
                else:
                    emit(f"{p}- [0{sym}]:")
            else:
                emit(f"{p}- {prim(v)}")

    def obj_fields(obj: dict[str, Any], depth: int, first: str | None) -> None:
        p = pad(depth)
        pre = p if first is None else first
        for k, v in obj.items():
            ek = keys.get(k) or key(k)
            t = type(v)
            if t is str:
                emit(f"{pre}{ek}: {string(v)}")
            elif t is dict:
                fields = shape(list(v.values())) if len(v) >= 2 else None
                if fields is not None:
                    keyed(pre, ek, v, fields, depth)
                else:
                    emit(f"{pre}{ek}:")
                    if v:
                        obj_fields(v, depth + 1, None)
            elif t is list:
                if v:
                    array(pre, ek, v, depth, True)
                else:
                    emit(f"{pre}{ek}: []")
            else:
                emit(f"{pre}{ek}: {prim(v)}")
            pre = p

    t = type(root)
    if t is dict:
        fields = shape(list(root.values())) if len(root) >= 2 else None
        if fields is not None:
            keyed("", "", root, fields, 0)
        else:
            obj_fields(root, 0, None)
    elif t is list:
        if root:
            array("", "", root, 0, True)
        else:
            emit("[]")
    elif t is str and root.startswith("\ufeff"):
        emit(quote(root))  # unquoted, it would read as a byte-order mark
    else:
        emit(prim(root))
    text = "\n".join(lines)
    if not text.isascii() and _SURROGATE.search(text) is not None:
        raise ValueError("String contains an unpaired surrogate")
    return text


def _normalize(value: Any, active: set[int]) -> Any:
    """Map host values onto the JSON data model, like ``toon_format`` does."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if value - value == 0 else None
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _normalize(float(value), active)
    marker = id(value)
    if marker in active:
        raise ValueError("Circular reference detected")
    active.add(marker)
    try:
        if isinstance(value, Mapping):
            result: dict[str, Any] = {}
            for k, v in value.items():
                name = _normalize_key(k)
                if name in result:
                    raise ValueError(f"Duplicate key after conversion: {name!r}")
                result[name] = _normalize(v, active)
            return result
        if isinstance(value, (list, tuple)):
            return [_normalize(v, active) for v in value]
        if isinstance(value, (set, frozenset)):
            try:
                members = sorted(value)
            except TypeError:
                members = sorted(value, key=repr)
            return [_normalize(v, active) for v in members]
        if isinstance(value, (datetime, date, time)):
            return value.isoformat()
        if isinstance(value, (UUID, PurePath)):
            return str(value)
        if isinstance(value, Enum):
            return _normalize(value.value, active)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _normalize(fields, active)
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(value, pydantic.BaseModel):
            return _normalize(value.model_dump(mode="json"), active)
    finally:
        active.discard(marker)
    raise TypeError(f"Object of type {type(value).__name__} is not TOON serializable")


def _normalize_key(key: Any) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float):
        if key - key == 0:
            return _format_float(key)
        return "NaN" if key != key else ("Infinity" if key > 0 else "-Infinity")
    raise TypeError(f"Keys must be str, int, float, bool or None, not {type(key).__name__}")


def dumps(value: Any, *, indent: int = 2, delimiter: str = ",") -> str:
    """Encode ``value`` as a TOON document (no trailing newline).

    ``indent`` is the number of spaces per level; ``delimiter`` is ``","``,
    ``"\\t"`` or ``"|"``. Raises ``TypeError`` for values with no TOON
    representation and ``ValueError`` for cycles or unpaired surrogates.
    """
    if delimiter not in _DELIMITERS:
        raise ValueError(f"delimiter must be ',', '\\t' or '|', got {delimiter!r}")
    delimiter = str.__str__(delimiter)
    _check_indent(indent)
    try:
        try:
            return _encode(value, indent, delimiter)
        except _Renormalize:
            return _encode(_normalize(value, set()), indent, delimiter)
    except RecursionError:
        raise ValueError("Object is nested too deeply (or circular) to encode") from None


# ---------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------

_scanstring: Any = json.decoder.scanstring  # C accelerated
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_BRACKET = re.compile(r"\[(0|[1-9][0-9]*)(:?)([\t|]?)\]")
_QUOTED = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_BAD_ESCAPE = re.compile(r'\\(?![nrt"]|u(?![dD][89a-fA-F])[0-9a-fA-F]{4})')
# "key: rest" with a plain key (no quote, colon or bracket); rest is already trimmed.
_FIELD = re.compile(r'([^":\[ ]*+(?:[ ]++[^":\[ ]++)*+)[ ]*+:[ ]*+(.*)', re.DOTALL)
_ITEM_FIELD = re.compile(r'- [ ]*+([^":\[ ]*+(?:[ ]++[^":\[ ]++)*+)[ ]*+:[ ]*+(.*)', re.DOTALL)
_JSON_ONLY = re.compile(r"\\[/bfu]")  # escapes JSON accepts beyond TOON's
_NOT_PLAIN = '"-0123456789 ['  # first characters of tokens that may not be plain strings
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_IN_QUOTES = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?'
# Prefix of a line up to the first occurrence of a character outside quotes.
_UNQUOTED_PREFIX = {
    c: re.compile(f'[^"{re.escape(c)}]*+(?:{_IN_QUOTES}[^"{re.escape(c)}]*+)*+', re.DOTALL)
    for c in (":", "[", *_DELIMITERS)
}
_CELLS = {
    d: re.compile(
        f'([^"{re.escape(d)}]*+(?:{_IN_QUOTES}[^"{re.escape(d)}]*+)*+)({re.escape(d)}?)', re.DOTALL
    )
    for d in _DELIMITERS
}
_SCALAR = (2,)

# A parsed header: key, length, keyed, delimiter, fields, rest, object builder, width,
# and a regex matching a row of quoted and plain cells.
_Header = tuple[str | None, int, bool, str, Any, str, Any, int, Any]
_ROW_CELL = {d: f'("[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+"|[^"{re.escape(d)}]*+)' for d in _DELIMITERS}


def _find_unquoted(text: str, char: str) -> int:
    """Index of the first ``char`` outside double quotes, or -1."""
    if '"' not in text:
        return text.find(char)
    end = _UNQUOTED_PREFIX[char].match(text).end()  # type: ignore[union-attr]
    return end if end < len(text) else -1


def _split_cells(text: str, delim: str) -> list[str]:
    if '"' not in text:
        return text.split(delim)
    pairs = _CELLS[delim].findall(text)
    if len(pairs) > 1 and not pairs[-2][1]:
        pairs.pop()  # the empty match findall reports at the end of the text
    return [cell for cell, _ in pairs]


def _materialize(fields: tuple[Any, ...], cells: Iterator[Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, nested in fields:
        obj[name] = next(cells) if nested is None else _materialize(nested, cells)
    return obj


def _builder(fields: tuple[Any, ...]) -> tuple[Callable[[list[Any]], dict[str, Any]], int]:
    """Compile a field list into a function building one object from row cells.

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
                parts.append(f"N[{len(names) - 1}]: c[{pos}]")
                pos += 1
            else:
                key = len(names) - 1
                sub, pos = expr(nested, pos, level + 1)
                parts.append(f"N[{key}]: {sub}")
        return "{" + ", ".join(parts) + "}", pos

    try:
        body, width = expr(fields, 0, 0)
        if width <= 256:
            return eval(f"lambda c: {body}", {"N": tuple(names)}), width  # noqa: S307
    except RecursionError:
        pass
    width = sum(1 for _ in _leaves(fields))
    return lambda cells: _materialize(fields, iter(cells)), width


def _leaves(fields: tuple[Any, ...]) -> Iterator[str]:
    for name, nested in fields:
        if nested is None:
            yield name
        else:
            yield from _leaves(nested)


def _prepare(
    text: str, indent: int, strict: bool
) -> tuple[list[str], list[int], list[int] | None, dict[int, int]]:
    """Split into (contents, depths, line numbers or None, blank-line map)."""
    raw = text.split("\n")
    if raw[-1] == "":
        raw.pop()
    if "\r" not in text:
        body = list(map(str.lstrip, raw, repeat(" ")))
        if body and "" not in body:
            firsts = "".join(map(itemgetter(0), body))
            if "#" not in firsts and "\t" not in firsts:  # no comment or tab-indented line
                spaces = list(map(sub, map(len, raw), map(len, body)))
                if " " in "".join(map(itemgetter(-1), body)):
                    body = list(map(str.rstrip, body, repeat(" ")))
                levels = {s: s // indent for s in set(spaces)}
                if strict and any(s % indent for s in levels):
                    for number, s in enumerate(spaces, 1):
                        if s % indent:
                            raise ToonDecodeError(
                                f"Indentation of {s} spaces is not a multiple of {indent}", number
                            )
                return body, list(map(levels.__getitem__, spaces)), None, {}
    return _prepare_slow(raw, indent, strict)


def _prepare_slow(
    raw: list[str], indent: int, strict: bool
) -> tuple[list[str], list[int], list[int] | None, dict[int, int]]:
    contents: list[str] = []
    depths: list[int] = []
    numbers: list[int] = []
    blanks: dict[int, int] = {}
    blank = 0
    for number, source in enumerate(raw, 1):
        if source.endswith("\r"):
            source = source[:-1]
        stripped = source.lstrip(" ")
        if stripped.startswith("#"):
            continue  # comment line
        content = stripped.rstrip(" ")
        if not content or (not strict and not content.strip(" \t")):
            blank = blank or number
            continue
        spaces = len(source) - len(stripped)
        if content[0] == "\t":
            if strict:
                raise ToonDecodeError("Tabs are not allowed in indentation", number)
            run = len(content) - len(content.lstrip(" \t"))
            spaces += content.count(" ", 0, run)
            depth = content.count("\t", 0, run) + spaces // indent
            content = content[run:]
        else:
            if strict and spaces % indent:
                raise ToonDecodeError(
                    f"Indentation of {spaces} spaces is not a multiple of {indent}", number
                )
            depth = spaces // indent
        if blank and strict:
            blanks[len(contents)] = blank
        blank = 0
        contents.append(content)
        depths.append(depth)
        numbers.append(number)
    return contents, depths, numbers, blanks


class _Decoder:
    def __init__(
        self,
        contents: list[str],
        depths: list[int],
        numbers: list[int] | None,
        blanks: dict[int, int],
        strict: bool,
        escapes: bool,
    ) -> None:
        self.escapes = escapes  # the text has JSON-only escapes: validate quoted tokens
        self.n = len(contents)
        self.C = contents + [""]  # a sentinel line at depth -1 ends every scope
        self.D = depths + [-1]
        self.N = numbers
        self.blanks = blanks
        self.strict = strict
        self.i = 0
        self.spans = 0  # open array scopes that consumed their first item
        self.headers: dict[str, _Header] = {}
        self.state = (self.C, self.D, blanks, strict, self.headers, escapes)

    # -- errors ---------------------------------------------------------------

    def error(self, reason: str, i: int) -> ToonDecodeError:
        line = i + 1 if self.N is None else self.N[min(i, self.n - 1)]
        return ToonDecodeError(reason, line)

    def blank_error(self, i: int) -> ToonDecodeError:
        return ToonDecodeError("Blank line inside an array or keyed object", self.blanks[i])

    # -- tokens ---------------------------------------------------------------

    def prim(self, tok: str, i: int) -> Any:
        if not tok:
            return ""
        c = tok[0]
        if c == '"':
            return self.quoted(tok, i)
        if c in "-0123456789":
            m = _NUMBER.fullmatch(tok)
            if m is None:
                return tok
            if m.lastindex is None:
                try:
                    return int(tok)
                except ValueError as exc:
                    raise self.error(str(exc), i) from None
            value = float(tok)
            if value in (float("inf"), float("-inf")):
                raise self.error(f"Number {tok} is out of range", i)
            return value or 0.0
        if c in "tfn" and len(tok) <= 5:
            if tok == "true":
                return True
            if tok == "false":
                return False
            if tok == "null":
                return None
        return tok

    def quoted(self, tok: str, i: int) -> str:
        try:
            value, end = _scanstring(tok, 1, False)
        except ValueError as exc:
            reason = "Unterminated string" if "Unterminated" in str(exc) else "Invalid escape"
            raise self.error(reason, i) from None
        if end != len(tok):
            raise self.error("Unexpected characters after closing quote", i)
        if self.escapes and (m := _BAD_ESCAPE.search(tok.replace("\\\\", ""))):
            raise self.error(f"Invalid escape sequence {m.string[m.start() : m.start() + 6]!r}", i)
        return value  # type: ignore[no-any-return]

    def key(self, tok: str, i: int) -> str:
        tok = tok.strip(" ")
        return self.quoted(tok, i) if tok.startswith('"') else tok

    def cell(self, tok: str, i: int) -> Any:
        if tok[:1] == '"' and tok[-1] == '"':
            try:
                value, end = _scanstring(tok, 1, False)
            except ValueError:
                end = -1
            if end == len(tok) and not self.escapes:
                return value
        return self.prim(tok.strip(" "), i)

    def values(self, text: str, delim: str, i: int) -> list[Any]:
        """Decode a delimited cell sequence; empty text is zero cells (spec 11.2)."""
        if not text:
            return []
        if '"' in text:
            values = self.quoted_row(text, delim, i)
            if values is not None:
                return values
        cell = self.cell
        literal = _LITERALS.get
        return [
            literal(c, c) if c and c[0] not in _NOT_PLAIN and c[-1] != " " else cell(c, i)
            for c in _split_cells(text, delim)
        ]

    def quoted_row(self, row: str, delim: str, i: int) -> list[Any] | None:
        """Split and decode a row whose quoted cells are whole tokens.

        Returns None (the caller then takes the general path) for anything unusual,
        including a first cell with an unquoted colon, which ends a table.
        """
        out: list[Any] = []
        pos = 0
        n = len(row)
        while True:
            if row.startswith('"', pos):
                try:
                    value, end = _scanstring(row, pos + 1, False)
                except ValueError:
                    return None
                if self.escapes and _JSON_ONLY.search(row, pos, end) is not None:
                    return None
                out.append(value)
                if end == n:
                    return out
                if row[end] != delim:
                    return None
                pos = end + 1
            else:
                nxt = row.find(delim, pos)
                tok = row[pos:] if nxt < 0 else row[pos:nxt]
                if '"' in tok or (not pos and ":" in tok):
                    return None
                if tok and tok[0] not in _NOT_PLAIN and tok[-1] != " ":
                    out.append(_LITERALS.get(tok, tok))
                else:
                    out.append(self.prim(tok.strip(" "), i))
                if nxt < 0:
                    return out
                pos = nxt + 1

    # -- line classes -----------------------------------------------------------

    def classify(self, content: str, i: int) -> tuple[Any, ...]:
        """(0, header) | (1, key, rest) | (2,) for a scalar line."""
        colon = _find_unquoted(content, ":")
        if content.startswith('"'):
            m = _QUOTED.match(content)
            if m is None:
                raise self.error("Unterminated string", i)
            end = m.end()
            if colon >= 0 and content.startswith("[", end):
                return 0, self.header(content, end, i)
            after = content[end:].lstrip(" ")
            if not after:
                return _SCALAR
            if after[0] != ":":
                raise self.error("Unexpected characters after closing quote", i)
            return 1, self.quoted(content[:end], i), after[1:].strip(" ")
        bracket = _find_unquoted(content, "[")
        if 0 <= bracket < colon:
            return 0, self.header(content, bracket, i)
        if colon >= 0:
            return 1, content[:colon].strip(" "), content[colon + 1 :].strip(" ")
        return _SCALAR

    def header(self, content: str, bracket: int, i: int) -> _Header:
        cached = self.headers.get(content)
        if cached is not None:
            return cached
        m = _BRACKET.match(content, bracket)
        if m is None:
            raise self.error("Malformed bracket segment", i)
        if content[bracket - 1 : bracket] in (" ", "\t"):
            raise self.error("Whitespace between a key and its bracket segment", i)
        delim = m.group(3) or ","
        pos = m.end()
        fields = None
        if content.startswith("{", pos):
            fields, pos = self.field_list(content, pos, delim, i)
        if not content.startswith(":", pos):
            raise self.error("Expected ':' after the array header", i)
        rest = content[pos + 1 :].strip(" ")
        keyed = bool(m.group(2))
        if keyed and fields is None:
            raise self.error("A keyed header requires a field list", i)
        if fields is not None and rest:
            raise self.error("Unexpected content after a header with a field list", i)
        build = row_re = None
        width = 0
        if fields is not None:
            build, width = _builder(fields)
            if width <= 64:
                cell = _ROW_CELL[delim]
                row_re = re.compile(cell + (re.escape(delim) + cell) * (width - 1), re.DOTALL)
        key_text = content[:bracket]
        key = self.key(key_text, i) if key_text else None
        header = (key, int(m.group(1)), keyed, delim, fields, rest, build, width, row_re)
        if len(content) < 256:
            self.headers[content] = header
        return header

    def field_list(self, text: str, pos: int, delim: str, i: int) -> tuple[Any, int]:
        fields: list[tuple[str, Any]] = []
        seen: set[str] = set()
        n = len(text)
        pos += 1
        while True:
            while pos < n and text[pos] == " ":
                pos += 1
            if text.startswith('"', pos):
                m = _QUOTED.match(text, pos)
                if m is None:
                    raise self.error("Unterminated field name", i)
                name = self.quoted(m.group(), i)
                pos = m.end()
            else:
                start = pos
                while pos < n and text[pos] not in "{},|\t":
                    if text[pos] == '"':
                        m = _QUOTED.match(text, pos)
                        pos = m.end() if m else n
                    else:
                        pos += 1
                name = text[start:pos].strip(" ")
                if not name:
                    raise self.error("Empty field name in field list", i)
            while pos < n and text[pos] == " ":
                pos += 1
            nested = None
            if text.startswith("{", pos):
                if text[pos - 1] == " ":
                    raise self.error("Whitespace between a field name and its field group", i)
                nested, pos = self.field_list(text, pos, delim, i)
                while pos < n and text[pos] == " ":
                    pos += 1
            if name in seen and self.strict:
                raise self.error(f"Duplicate field name {name!r}", i)
            seen.add(name)
            fields.append((name, nested))
            if pos >= n:
                raise self.error("Unmatched '{' in field list", i)
            c = text[pos]
            pos += 1
            if c == "}":
                return tuple(fields), pos
            if c != delim:
                if c in _DELIMITERS:
                    raise self.error("Field list delimiter does not match the bracket", i)
                raise self.error("Malformed field list", i)

    # -- document and objects -------------------------------------------------

    def document(self) -> Any:
        if not self.n:
            return {}
        if self.D[0] > 0:
            raise self.error("Unexpected indentation", 0)
        first = self.C[0]
        if first == "[]":
            self.i = 1
            self.end_of_root()
            return []
        kind = self.classify(first, 0)
        if kind[0] == 0 and kind[1][0] is None:
            self.i = 1
            value = self.header_value(kind[1], 0, 1)
            self.end_of_root()
            return value
        if kind[0] == 2 and self.n == 1:
            return self.prim(first, 0)
        return self.object_body(0, {}, -1)

    def end_of_root(self) -> None:
        if self.i < self.n:
            raise self.error("Unexpected content after the root value", self.i)

    def object_body(self, depth: int, obj: dict[str, Any], parent: int) -> dict[str, Any]:
        """Parse the fields at ``depth`` of an object opened at ``parent`` into ``obj``."""
        C, D, blanks, strict, headers, escapes = self.state
        match = _FIELD.match
        literal = _LITERALS.get
        i = self.i
        while True:
            d = D[i]
            if d <= parent:
                break
            if d != depth:
                raise self.error("Unexpected indentation", i)
            if blanks and self.spans and i in blanks:
                raise self.blank_error(i)
            line = i
            content = C[i]
            i += 1
            m = match(content)
            if m is None:
                self.i = i
                header = headers.get(content)
                if header is not None and header[0] is not None:
                    key = header[0]
                    if header[4] is not None and not header[2]:  # a table: skip header_value
                        d = D[i]
                        scope = d if d > depth + 1 and not strict else depth + 1
                        value = self.rows(header, line, scope, depth)
                    else:
                        value = self.header_value(header, line, depth + 1)
                else:
                    key, value = self.general_field(content, line, depth)
                i = self.i
            else:
                key, rest = m.groups()
                if not rest:
                    self.i = i
                    value = self.field_value(rest, line, depth)
                    i = self.i
                elif rest[0] not in _NOT_PLAIN:
                    value = literal(rest, rest)
                elif rest[0] == '"':
                    try:
                        value, end = _scanstring(rest, 1, False)
                    except ValueError:
                        end = -1
                    if end != len(rest) or escapes:
                        value = self.quoted(rest, line)
                else:
                    value = [] if rest == "[]" else self.prim(rest, line)
            if strict and key in obj:
                raise self.error(f"Duplicate key {key!r}", line)
            obj[key] = value
        self.i = i
        return obj

    def general_field(self, content: str, i: int, depth: int) -> tuple[str, Any]:
        kind = self.classify(content, i)
        if kind[0] == 0:
            header = kind[1]
            if header[0] is None:
                raise self.error("A header without a key is only valid at the root", i)
            return header[0], self.header_value(header, i, depth + 1)
        if kind[0] == 2:
            raise self.error("Expected 'key: value'", i)
        return kind[1], self.field_value(kind[2], i, depth)

    def field_value(self, rest: str, i: int, depth: int) -> Any:
        """The value after ``key:`` of a field standing at ``depth``."""
        if rest:
            return [] if rest == "[]" else self.prim(rest, i)
        j = self.i
        d = self.D[j]
        if d <= depth:
            return {}
        if self.strict and d != depth + 1:
            raise self.error("Indentation jumps more than one level", j)
        return self.object_body(d, {}, depth)

    # -- arrays and keyed objects ---------------------------------------------

    def header_value(self, header: _Header, i: int, depth: int) -> Any:
        """Decode the value a header opens; ``depth`` is its content depth."""
        if header[5]:
            values = self.values(header[5], header[3], i)
            self.check_count(len(values), header, i)
            return values
        d = self.D[self.i]
        scope = d if d > depth and not self.strict else depth  # non-strict: deeper is ok
        if header[4] is None:
            return self.items(header, i, scope, depth - 1)
        if header[2]:
            return self.entries(header, i, scope, depth - 1)
        return self.rows(header, i, scope, depth - 1)

    def check_count(self, count: int, header: _Header, i: int) -> None:
        if self.strict and count != header[1]:
            raise self.error(f"Declared length {header[1]} but found {count}", i)

    def items(self, header: _Header, hi: int, depth: int, parent: int) -> list[Any]:
        """Parse the list items of an array (spec 9.4, 10).

        Items of the form ``- key: value`` (objects, the common case) are parsed here
        with the loop of :meth:`object_body` inlined, which saves a call per item.
        """
        C, D, blanks, strict, headers, escapes = self.state
        item_match = _ITEM_FIELD.match
        match = _FIELD.match
        literal = _LITERALS.get
        inner = depth + 1
        out: list[Any] = []
        append = out.append
        started = False
        i = self.i
        while True:
            d = D[i]
            if d <= parent:
                break
            if d != depth:
                raise self.error("Unexpected indentation", i)
            content = C[i]
            if content[:2] != "- " and content != "-":
                break
            if blanks:
                if self.spans and i in blanks:
                    raise self.blank_error(i)
                if not started:
                    self.spans += 1
                    started = True
            line = i
            i += 1
            m = item_match(content)
            if m is None:
                self.i = i
                append(self.item(content, line, depth))
                i = self.i
                continue
            # An object whose first field sits on the hyphen line: one pass of this
            # loop per "key: value" line with a plain key; other lines are handled
            # in the inner loop.
            obj: dict[str, Any] = {}
            while True:
                key, rest = m.groups()
                if not rest:
                    self.i = i
                    value = self.field_value(rest, line, inner)
                    i = self.i
                elif rest[0] not in _NOT_PLAIN:
                    value = literal(rest, rest)
                elif rest[0] == '"':
                    try:
                        value, end = _scanstring(rest, 1, False)
                    except ValueError:
                        end = -1
                    if end != len(rest) or escapes:
                        value = self.quoted(rest, line)
                else:
                    value = [] if rest == "[]" else self.prim(rest, line)
                if strict and key in obj:
                    raise self.error(f"Duplicate key {key!r}", line)
                obj[key] = value
                while True:
                    d = D[i]
                    if d <= depth:
                        break
                    if d != inner:
                        raise self.error("Unexpected indentation", i)
                    if blanks and self.spans and i in blanks:
                        raise self.blank_error(i)
                    line = i
                    content = C[i]
                    i += 1
                    m = match(content)
                    if m is not None:
                        break
                    self.i = i
                    found = headers.get(content)
                    if found is not None and found[0] is not None:
                        key = found[0]
                        if found[4] is not None and not found[2]:  # a table
                            below = D[i]
                            scope = below if below > inner + 1 and not strict else inner + 1
                            value = self.rows(found, line, scope, inner)
                        else:
                            value = self.header_value(found, line, inner + 1)
                    else:
                        key, value = self.general_field(content, line, inner)
                    i = self.i
                    if strict and key in obj:
                        raise self.error(f"Duplicate key {key!r}", line)
                    obj[key] = value
                if d <= depth:
                    break
            append(obj)
        self.i = i
        self.spans -= started
        self.check_count(len(out), header, hi)
        return out

    def item(self, content: str, i: int, depth: int) -> Any:
        """Decode a list item that is not ``- key: value`` with a plain key."""
        rest = content[2:].strip(" ")
        if not rest:
            return {}
        if rest == "[]":
            return []
        kind = self.classify(rest, i)
        if kind[0] == 2:
            return self.prim(rest, i)
        if kind[0] == 0:
            header = kind[1]
            if header[0] is None:
                if header[4] is not None:
                    raise self.error("A header with a field list cannot be a list item", i)
                return self.header_value(header, i, depth + 1)
            obj = {header[0]: self.header_value(header, i, depth + 2)}
        else:
            obj = {kind[1]: self.field_value(kind[2], i, depth + 1)}
        return self.object_body(depth + 1, obj, depth)

    def rows(self, header: _Header, hi: int, depth: int, parent: int) -> list[Any]:
        """Parse the rows of a tabular array (spec 9.3)."""
        C = self.C
        D = self.D
        cell = self.cell
        literal = _LITERALS.get
        delim = header[3]
        build = header[6]
        width = header[7]
        row_re = header[8]
        out: list[Any] = []
        started = False
        i = self.i
        while True:
            d = D[i]
            if d <= parent:
                break
            if d != depth:
                raise self.error("Unexpected indentation", i)
            row = C[i]
            if '"' not in row:
                if ":" in row:
                    split = row.find(delim)
                    if split < 0 or row.find(":") < split:
                        break  # a key-value line ends the rows
                cells = row.split(delim)
            elif row_re is not None and (m := row_re.fullmatch(row)) is not None:
                cells = m.groups()  # type: ignore[assignment]
                first = cells[0]
                if ":" in first and first[0] != '"':
                    break
            else:
                cells = _split_cells(row, delim)
                first = cells[0]
                if ":" in first and _find_unquoted(first, ":") >= 0:
                    break
            if self.blanks:
                if self.spans and i in self.blanks:
                    raise self.blank_error(i)
                if not started:
                    self.spans += 1
                    started = True
            if len(cells) != width:
                raise self.error(f"Expected {width} values but found {len(cells)}", i)
            out.append(
                build(
                    [
                        literal(c, c)
                        if c and c[0] not in _NOT_PLAIN and c[-1] != " "
                        else cell(c, i)
                        for c in cells
                    ]
                )
            )
            i += 1
        self.i = i
        self.spans -= started
        if self.strict and len(out) != header[1]:
            raise self.error(f"Declared length {header[1]} but found {len(out)}", hi)
        return out

    def entries(self, header: _Header, hi: int, depth: int, parent: int) -> dict[str, Any]:
        """Parse the entry rows of a keyed tabular object (spec 9.5)."""
        C = self.C
        D = self.D
        blanks = self.blanks
        delim = header[3]
        build = header[6]
        width = header[7]
        obj: dict[str, Any] = {}
        count = 0
        while True:
            i = self.i
            d = D[i]
            if d <= parent:
                break
            if d != depth:
                raise self.error("Unexpected indentation", i)
            if blanks and self.spans and i in blanks:
                raise self.blank_error(i)
            self.i = i + 1
            if not count:
                self.spans += 1
            count += 1
            content = C[i]
            colon = _find_unquoted(content, ":")
            if colon < 0:
                raise self.error("Expected 'key: values' entry row", i)
            key = self.key(content[:colon], i)
            cells = self.values(content[colon + 1 :].strip(" "), delim, i)
            if len(cells) != width:
                raise self.error(f"Expected {width} values but found {len(cells)}", i)
            if self.strict and key in obj:
                raise self.error(f"Duplicate key {key!r}", i)
            obj[key] = build(cells)
        self.spans -= bool(count)
        self.check_count(count, header, hi)
        return obj


def loads(text: str | bytes | bytearray, *, indent: int = 2, strict: bool = True) -> Any:
    """Decode a TOON document.

    ``indent`` is the number of spaces per level. ``strict`` (default) enforces
    every check of spec 14; ``strict=False`` tolerates length mismatches,
    duplicate keys (last wins), tab or uneven indentation and blank lines in arrays.
    Raises :class:`ToonDecodeError` for invalid documents.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToonDecodeError(f"Invalid UTF-8: {exc.reason} at byte {exc.start}") from None
    elif not isinstance(text, str):
        raise TypeError(f"the TOON document must be str or bytes, not {type(text).__name__}")
    _check_indent(indent)
    if text.startswith("\ufeff"):
        text = text[1:]
    escapes = _JSON_ONLY.search(text) is not None
    decoder = _Decoder(*_prepare(text, indent, strict), strict, escapes)
    try:
        return decoder.document()
    except RecursionError:
        raise ToonDecodeError("Document is nested too deeply to decode") from None

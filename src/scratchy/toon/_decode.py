"""TOON decoder: TOON text to Python values (spec 4.4).

The text is split into lines once; comment and blank lines are dropped and each
line's depth is computed with C-level operations (a slower path handles tabs, CRLF,
comments and blank lines). A recursive-descent parser then walks the lines, with the
common line shapes (``key: value``, ``- key: value``, table rows) inlined and parsed
with precompiled regexes, and quoted strings decoded by ``json``'s C scanner.
Error checks and messages follow the reference ``toon_format`` decoder.
"""

from __future__ import annotations

import gc
import re
from typing import Any

from ._common import DELIMITERS, ToonDecodeError, check_indent
from ._lines import split_lines
from ._tables import (
    LITERALS,
    NOT_PLAIN,
    ROW_CELL,
    builder,
    cell_kind,
    fast_row,
    find_unquoted,
    scanstring,
    split_cells,
)

__all__ = ["loads"]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_BRACKET = re.compile(r"\[(0|[1-9][0-9]*)(:?)([\t|]?)\]")
_QUOTED = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_BAD_ESCAPE = re.compile(r'\\(?![nrt"]|u(?![dD][89a-fA-F])[0-9a-fA-F]{4})')
# "key: rest" with a plain key (no quote, colon or bracket); rest is already trimmed.
_FIELD = re.compile(r'([^":\[ ]*+(?:[ ]++[^":\[ ]++)*+)[ ]*+:[ ]*+(.*)', re.DOTALL)
_ITEM_FIELD = re.compile(r'- [ ]*+([^":\[ ]*+(?:[ ]++[^":\[ ]++)*+)[ ]*+:[ ]*+(.*)', re.DOTALL)
_JSON_ONLY = re.compile(r"\\[/bfu]")  # escapes JSON accepts beyond TOON's
_SCALAR = (2,)
# Parsed headers by line content, for strict and non-strict decoding (bounded).
_HEADERS: dict[bool, dict[str, Any]] = {True: {}, False: {}}

# A parsed header: key, length, keyed, delimiter, fields, rest, object builder, width,
# a regex matching a row of quoted and plain cells, and the fast row path learned from
# a row (see fast_row): [] before any row, then [regex, builder, tail, 0] or
# [None, None, False, n] when there is none yet (n > 0: rows left to learn from).
_Header = tuple[str | None, int, bool, str, Any, str, Any, int, Any, list[Any]]


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
        self.headers = _HEADERS[strict]
        self.state = (self.C, self.D, blanks, strict, self.headers, escapes)
        # (key, value) of short "key: value" lines already decoded (values are immutable).
        self.seen_fields: dict[str, tuple[str, Any]] = {}
        self.seen_items: dict[str, tuple[str, Any]] = {}

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
            value, end = scanstring(tok, 1, False)
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
                value, end = scanstring(tok, 1, False)
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
        literal = LITERALS.get
        return [
            literal(c, c) if c and c[0] not in NOT_PLAIN and c[-1] != " " else cell(c, i)
            for c in split_cells(text, delim)
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
                    value, end = scanstring(row, pos + 1, False)
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
                if tok and tok[0] not in NOT_PLAIN and tok[-1] != " ":
                    out.append(LITERALS.get(tok, tok))
                else:
                    out.append(self.prim(tok.strip(" "), i))
                if nxt < 0:
                    return out
                pos = nxt + 1

    # -- line classes -----------------------------------------------------------

    def classify(self, content: str, i: int) -> tuple[Any, ...]:
        """(0, header) | (1, key, rest) | (2,) for a scalar line."""
        colon = find_unquoted(content, ":")
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
        bracket = find_unquoted(content, "[")
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
            build, width = builder(fields)
            if width <= 64:
                cell = ROW_CELL[delim]
                row_re = re.compile(cell + (re.escape(delim) + cell) * (width - 1), re.DOTALL)
        key_text = content[:bracket]
        key = self.key(key_text, i) if key_text else None
        header = (key, int(m.group(1)), keyed, delim, fields, rest, build, width, row_re, [])
        if len(content) < 256:
            if len(self.headers) >= 1024:
                self.headers.clear()
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
                if c in DELIMITERS:
                    raise self.error("Field list delimiter does not match the bracket", i)
                raise self.error("Malformed field list", i)

    # -- document and objects -------------------------------------------------

    def document(self) -> Any:
        if not self.n:
            return {}
        if self.D[0] > 0:
            raise self.error("Unexpected indentation", 0)
        first = self.C[0]
        if _FIELD.match(first) is not None:  # "key: value": an object (the common case)
            return self.object_body(0, {}, -1)
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
        seen = self.seen_fields
        match = _FIELD.match
        i = self.i
        while True:
            d = D[i]
            if d != depth:
                if d <= parent:
                    break
                raise self.error("Unexpected indentation", i)
            if blanks and self.spans and i in blanks:
                raise self.blank_error(i)
            line = i
            content = C[i]
            i += 1
            known = seen.get(content) if len(content) <= 64 else None
            if known is not None:
                key, value = known
            elif (m := match(content)) is not None:
                key = m.group(1)
                at = m.start(2)
                if content[at : at + 1] == '"':  # decoded in place: no copy of the value
                    try:
                        value, end = scanstring(content, at + 1, False)
                    except ValueError:
                        end = -1
                    if end != len(content) or escapes:
                        value = self.quoted(content[at:], line)
                    if len(content) <= 64:
                        seen[content] = (key, value)
                    if strict and key in obj:
                        raise self.error(f"Duplicate key {key!r}", line)
                    obj[key] = value
                    continue
                rest = content[at:]
                if not rest:
                    self.i = i
                    value = self.field_value(rest, line, depth)
                    i = self.i
                else:
                    if rest[0] not in NOT_PLAIN:
                        value = LITERALS.get(rest, rest)
                    elif rest == "[]":
                        value = []
                    else:
                        value = self.prim(rest, line)
                    if len(content) <= 64 and rest != "[]":
                        seen[content] = (key, value)
            else:
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

        Items of the form ``- key: value`` (objects, the common case) have their first field
        parsed here and the others by :meth:`object_body`.
        """
        C, D, blanks, strict, headers, escapes = self.state
        seen_items = self.seen_items
        item_match = _ITEM_FIELD.match
        inner = depth + 1
        out: list[Any] = []
        append = out.append
        started = False
        i = self.i
        while True:
            d = D[i]
            if d != depth:
                if d <= parent:
                    break
                raise self.error("Unexpected indentation", i)
            line = i
            content = C[i]
            known = seen_items.get(content) if len(content) <= 64 else None
            if known is None:
                if content[:2] != "- " and content != "-":
                    break
                m = item_match(content)
            if blanks:
                if self.spans and i in blanks:
                    raise self.blank_error(i)
                if not started:
                    self.spans += 1
                    started = True
            i += 1
            if known is None:
                if m is None:
                    self.i = i
                    append(self.item(content, line, depth))
                    i = self.i
                    continue
                # An object whose first field sits on the hyphen line.
                key, rest = m.groups()
                if not rest:
                    self.i = i
                    value = self.field_value(rest, line, inner)
                    i = self.i
                else:
                    if rest[0] not in NOT_PLAIN:
                        value = LITERALS.get(rest, rest)
                    elif rest[0] == '"':
                        try:
                            value, end = scanstring(rest, 1, False)
                        except ValueError:
                            end = -1
                        if end != len(rest) or escapes:
                            value = self.quoted(rest, line)
                    elif rest == "[]":
                        value = []
                    else:
                        value = self.prim(rest, line)
                    if len(content) <= 64 and rest != "[]":
                        seen_items[content] = (key, value)
            else:
                key, value = known
            self.i = i
            append(self.object_body(inner, {key: value}, depth))
            i = self.i
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
        literal = LITERALS.get
        _, length, _, delim, fields, _, build, width, row_re, fast = header
        fast_re = fast_build = None
        tail = False
        if fast and fast[0] is not None and not self.escapes:
            fast_re, fast_build, tail, _ = fast
        learn = not self.escapes and width <= 64 and fast_re is None and (not fast or fast[3])
        out: list[Any] = []
        started = False
        i = self.i
        while True:
            d = D[i]
            if d != depth:
                if d <= parent:
                    break
                raise self.error("Unexpected indentation", i)
            row = C[i]
            if fast_re is not None and (m := fast_re.match(row)) is not None:
                try:
                    if tail:
                        value, end = scanstring(row, m.end() + 1, False)
                        obj = fast_build(m.groups() + (value,)) if end == len(row) else None
                    else:
                        obj = fast_build(m.groups()) if m.end() == len(row) else None
                except ValueError:  # a bad escape: the general path reports it
                    obj = None
                if obj is not None:
                    if self.blanks:
                        if self.spans and i in self.blanks:
                            raise self.blank_error(i)
                        if not started:
                            self.spans += 1
                            started = True
                    out.append(obj)
                    i += 1
                    continue
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
                cells = split_cells(row, delim)
                first = cells[0]
                if ":" in first and find_unquoted(first, ":") >= 0:
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
                        if c and c[0] not in NOT_PLAIN and c[-1] != " "
                        else cell(c, i)
                        for c in cells
                    ]
                )
            )
            if learn:
                kinds = [cell_kind(c, not k) for k, c in enumerate(cells)]
                if "q" in kinds and None not in kinds:
                    fast[:] = fast_row(kinds, delim, fields)  # type: ignore[arg-type]
                    fast_re, fast_build, tail, _ = fast
                    learn = False
                else:  # retry on a few more rows while they are all plain
                    tries = 0 if None in kinds else (fast[3] if fast else 16) - 1
                    fast[:] = [None, None, False, tries]
                    learn = tries > 0
            i += 1
        self.i = i
        self.spans -= started
        if self.strict and len(out) != length:
            raise self.error(f"Declared length {length} but found {len(out)}", hi)
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
            colon = find_unquoted(content, ":")
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
    check_indent(indent)
    if text.startswith("\ufeff"):
        text = text[1:]
    # The decoder makes many short-lived tuples but no reference cycles: on a large
    # document, collections triggered by them would repeatedly walk the growing result,
    # so the cyclic collector is paused (and restored) while decoding.
    pause = len(text) > 65536 and gc.isenabled()
    if pause:
        gc.disable()
    try:
        escapes = _JSON_ONLY.search(text) is not None
        decoder = _Decoder(*split_lines(text, indent, strict), strict, escapes)
        return decoder.document()
    except RecursionError:
        raise ToonDecodeError("Document is nested too deeply to decode") from None
    finally:
        if pause:
            gc.enable()

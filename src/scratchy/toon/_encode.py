"""TOON encoder: Python values to TOON text (spec 4.4).

The output is byte-identical to the reference ``toon_format.dumps``. The fast path
assumes plain JSON data; anything else makes it start over on normalized data.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from ._common import DELIMITERS, check_indent

__all__ = ["dumps"]

_encode_basestring: Any = json.encoder.encode_basestring  # C accelerated
_UNQUOTED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMERIC_LIKE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SPECIAL = {d: re.compile('[:"\\\\\\[\\]{}\\x00-\\x1f' + re.escape(d) + "]") for d in DELIMITERS}
_CONTROL = re.compile('[\\\\"\\x00-\\x1f]')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PRIMITIVES = frozenset((str, int, float, bool, type(None)))
_KEYWORDS = frozenset(("true", "false", "null"))


# Caches shared by all calls (bounded): encoded keys, encoded short strings and tables
# (field list text and row getter by shape), the last two per delimiter.
_KEY_CACHE: dict[str, str] = {}
_STRING_CACHE: dict[str, dict[str, str]] = {d: {} for d in DELIMITERS}
_TABLE_CACHE: dict[str, dict[tuple[Any, ...], Any]] = {d: {} for d in DELIMITERS}


class _Renormalize(Exception):
    """Raised by the fast encoder when it meets a value outside plain JSON data."""


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _quote(value: str) -> str:
    if "\x08" in value or "\x0c" in value:  # json would write \b and \f; TOON cannot
        return '"' + _CONTROL.sub(_escape_char, value) + '"'
    return _encode_basestring(value)  # type: ignore[no-any-return]


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
    keys = _KEY_CACHE
    small = _STRING_CACHE[delim]
    tables = _TABLE_CACHE[delim]
    if len(keys) > 4096:
        keys.clear()
    if len(small) > 4096:
        small.clear()
    if len(tables) > 256:
        tables.clear()
    special = _SPECIAL[delim].search
    numeric_like = _NUMERIC_LIKE.fullmatch
    quote = _quote
    prims = _PRIMITIVES

    def pad(depth: int) -> str:
        while len(pads) <= depth:
            pads.append(pads[-1] + unit)
        return pads[depth]

    def string(s: str) -> str:
        short = len(s) <= 32
        if short:
            encoded = small.get(s)
            if encoded is not None:
                return encoded
        if (
            not s
            or s[0] in " \t-#"
            or s[-1] in " \t"
            or special(s) is not None
            or (s[0] in "0123456789+" and numeric_like(s) is not None)
            or (short and s in _KEYWORDS)
        ):
            encoded = quote(s)
        else:
            encoded = s
        if short:
            small[s] = encoded
        return encoded

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
        """Shared field list of uniform objects (spec 9.3), or None.

        Values of types outside plain JSON data make it return None; the encoder
        meets them later and starts over with normalized data.
        """
        first = objs[0]
        if type(first) is not dict or not first:
            return None
        rest = objs[1:]
        if rest:
            names = first.keys()
            size = len(names)
            for obj in rest:
                if type(obj) is not dict or len(obj) != size or obj.keys() != names:
                    return None
        fields = []
        for name, value in first.items():
            t = type(value)
            if t in prims:
                for obj in rest:
                    if type(obj[name]) not in prims:
                        return None
                fields.append((name, None))
            elif t is dict:
                nested = shape([obj[name] for obj in objs])
                if nested is None:
                    return None
                fields.append((name, nested))
            else:
                return None
        return tuple(fields)

    def table(fields: tuple[Any, ...]) -> tuple[str, Callable[[Any], tuple[Any, ...]]]:
        """The field list text of a shape and a function returning a row's values."""
        found = tables.get(fields)
        if found is None:
            found = tables[fields] = (field_list(fields), _row_getter(fields))
        return found

    def field_list(fields: tuple[Any, ...]) -> str:
        parts = [
            (keys.get(name) or key(name)) + ("" if nested is None else field_list(nested))
            for name, nested in fields
        ]
        return "{" + delim.join(parts) + "}"

    def keyed(pre: str, k: str, obj: dict[str, Any], fields: tuple[Any, ...], depth: int) -> None:
        header, getter = table(fields)
        emit(f"{pre}{k}[{len(obj)}:{sym}]{header}:")
        p = pad(depth + 1)
        for name, value in obj.items():
            emit(f"{p}{keys.get(name) or key(name)}: {delim.join(map(prim, getter(value)))}")

    def array(pre: str, k: str, arr: list[Any], depth: int, tabular: bool) -> None:
        head = f"{pre}{k}[{len(arr)}{sym}]"
        for v in arr:
            if type(v) not in prims:
                break
        else:
            emit(f"{head}: {delim.join(map(prim, arr))}")
            return
        fields = shape(arr) if tabular else None
        if fields is not None:
            header, getter = table(fields)
            emit(f"{head}{header}:")
            p = pad(depth + 1)
            for obj in arr:
                emit(p + delim.join(map(prim, getter(obj))))
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
                fields = None
                if len(v) >= 2:
                    values = list(v.values())
                    if type(values[0]) is dict:
                        fields = shape(values)
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
    if not text.isascii():
        try:
            text.encode("latin-1")  # fast, and a latin-1 text has no surrogates
        except UnicodeEncodeError:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("String contains an unpaired surrogate") from None
    return text


def _row_getter(fields: tuple[Any, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Compile a shape into a function returning an object's leaf values in order.

    The generated source only contains integers (names are looked up in a tuple).
    """
    names: list[str] = []

    def paths(fields: tuple[Any, ...], prefix: str, level: int) -> list[str]:
        if level > 16:
            raise RecursionError
        out = []
        for name, nested in fields:
            names.append(name)
            path = f"{prefix}[N[{len(names) - 1}]]"
            out.extend([path] if nested is None else paths(nested, path, level + 1))
        return out

    try:
        leaves = paths(fields, "o", 0)
        if len(leaves) <= 256:
            return eval(f"lambda o: ({', '.join(leaves)},)", {"N": tuple(names)})  # noqa: S307
    except RecursionError:
        pass

    def walk(obj: Any, fields: tuple[Any, ...], out: list[Any]) -> list[Any]:
        for name, nested in fields:
            if nested is None:
                out.append(obj[name])
            else:
                walk(obj[name], nested, out)
        return out

    return lambda obj: tuple(walk(obj, fields, []))


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
    if delimiter not in DELIMITERS:
        raise ValueError(f"delimiter must be ',', '\\t' or '|', got {delimiter!r}")
    delimiter = str.__str__(delimiter)
    check_indent(indent)
    try:
        try:
            return _encode(value, indent, delimiter)
        except _Renormalize:
            return _encode(_normalize(value, set()), indent, delimiter)
    except RecursionError:
        raise ValueError("Object is nested too deeply (or circular) to encode") from None

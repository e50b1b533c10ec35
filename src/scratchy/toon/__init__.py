"""A fast, conformant TOON (Token-Oriented Object Notation) codec in pure Python.

Spec version: TOON 4.4, as implemented by the reference Python package
``toon-format`` 1.2.0 (and ``@toon-format/toon`` 4.4.0). It passes all 516 cases of
the ``toon-format/spec`` conformance fixtures (the spec 4.0 suite) with one deliberate
exception: 4 optional non-strict decode cases where a malformed header falls back to a
literal key (``key[]: 1,2`` -> ``{"key[]": "1,2"}``, ``foo[2]extra: a,b``, ...) are
rejected with :class:`ToonDecodeError`, as spec 4.4 and both reference implementations
do. ``tests/test_toon_conformance.py`` asserts that explicitly.

API::

    dumps(value, *, indent=2, delimiter=",") -> str    # no trailing newline
    loads(text, *, indent=2, strict=True) -> Any       # text: str, or UTF-8 bytes

``indent`` and ``delimiter`` (``","``, ``"\\t"`` or ``"|"``) are the fixtures'
``indentSize`` and ``delimiter`` options, ``strict`` is their ``strict``. Key folding
and path expansion (``keyFolding``, ``flattenDepth``, ``expandPaths``) are not part of
spec 4.4 nor of the fixtures, and are not implemented.

Choices:

* ``dumps`` is deterministic and byte-identical to ``toon_format.dumps``: arrays of
  objects with the same keys and primitive (or nested uniform) values are tables,
  including nested field groups (``tool_calls[1]{id,type,function{name,arguments}}:``);
  objects whose values are uniform objects use the keyed table form (spec 9.5); other
  arrays of objects are list items (``- role: user``). Numbers are canonical: ``-0.0``
  is ``0``, integral floats below 1e21 are written as integers (so they decode as
  ``int``), other magnitudes outside [1e-6, 1e21) use exponent notation (``1e+21``);
  NaN and infinities become ``null``.
* Values should be JSON data (dict with str keys, list, str, int, float, bool, None).
  Anything else is first normalized as ``toon_format`` does, on a slower path: tuples
  and sets (sorted) become lists, non-str keys are converted like ``json`` does, str and
  int subclasses (enums) become plain values, dates use ``isoformat()``, UUIDs and paths
  ``str()``, dataclasses and pydantic models their fields. Other types raise
  ``TypeError``; cycles, unpaired surrogates and excessive nesting raise ``ValueError``.
* ``loads`` is strict by default (spec 14): declared lengths and row widths must match,
  indentation must be a multiple of ``indent`` without tabs, duplicate keys, blank lines
  inside arrays and invalid escapes are errors. ``strict=False`` relaxes exactly what
  the reference relaxes. ``-0`` decodes to ``0``; numbers with a fraction or exponent
  decode to ``float``; tokens outside the number grammar (``05``, ``+1``, ``.5``) stay
  strings. Comment lines (``# ...``), a BOM and CRLF line ends are accepted.
* Errors: :class:`ToonDecodeError` (a ``ValueError``) has ``.line`` (1-based; the same
  line the reference reports) and ``.reason``; ``str(error)`` is ``"line N: reason"``.

Speed: both directions are line-oriented and avoid per-character Python loops. Quoted
strings are escaped and unescaped by ``json``'s C functions (TOON escapes are a subset
of JSON's; the JSON-only ones are rejected). Hot line shapes are parsed inline with
precompiled regexes, repeated short lines and table headers are parsed once, and table
rows get a regex and an object builder compiled per header (generated code contains
only integer indexes, never names from the document). Module-level caches are bounded
and safe to share between threads. ``loads`` pauses the cyclic garbage collector while
decoding documents over 64 KiB (it creates no cycles; the previous state is restored).
"""

from __future__ import annotations

from ._common import ToonDecodeError
from ._decode import loads
from ._encode import dumps

__all__ = ["TOON_SPEC_VERSION", "ToonDecodeError", "dumps", "loads"]

TOON_SPEC_VERSION = "4.4"
"""The TOON specification version this codec follows."""

ToonDecodeError.__module__ = __name__  # shown as scratchy.toon.ToonDecodeError

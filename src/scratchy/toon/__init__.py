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

from ._common import ToonDecodeError
from ._decode import loads
from ._encode import dumps

__all__ = ["TOON_SPEC_VERSION", "ToonDecodeError", "dumps", "loads"]

TOON_SPEC_VERSION = "4.4"
"""The TOON specification version this codec follows."""

ToonDecodeError.__module__ = __name__  # shown as scratchy.toon.ToonDecodeError

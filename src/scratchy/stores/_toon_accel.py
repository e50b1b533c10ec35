"""An optional compiled decoder for session files: the ``toons`` package (``scratchy[fast]``).

:func:`decode_session` returns exactly what :func:`scratchy.toon.loads` returns for every
document Scratchy's encoder writes, faster. ``toons`` is used only for text shaped like such a
document; anything else, and any ``toons`` error, goes to the pure-Python decoder, so a
malformed file gets the same error (line and reason) either way.

``toons`` accepts a few malformed inputs that :mod:`scratchy.toon` rejects (blank lines inside
arrays, tabs in indentation, stray indentation before the first line, spaces or stray text in
the field list of a table header). Scratchy's encoder never writes a raw tab, a carriage
return, a blank line, a trailing space or such a field list, and a session file starts with its
``format`` line, so text with any of these is left to the pure decoder. The equality of both
paths is checked by property tests (``tests/test_toon_accel.py``), on random sessions and on
random damage done to them.

``SCRATCHY_TOON_ACCELERATOR=0`` (read at the first decode) or ``ENABLED = False`` turns it off;
without ``toons`` installed the pure decoder is used. ``toons`` is imported at the first decode.
"""

from __future__ import annotations

import gc
import os
import re
from typing import Any

from .. import toon

__all__ = ["ENABLED", "accelerated", "decode_session"]

ENABLED: bool | None = None
"""None: decided at the first decode (``toons`` importable and the env var not ``0``)."""
_toons: Any = None
_START = "format: scratchy-session/1\n"
_TABLE = re.compile(r"\[\d+\](\{[^\n]*)$", re.M)
"""A table header with a field list (``tool_calls[1]{id,function{name,arguments}}:``)."""
_TOKEN = re.compile(r'(?P<name>[A-Za-z_][A-Za-z0-9_.]*|"(?:[^"\\\n]|\\.)*")|[{},]|.', re.S)
_good: set[str] = set()
_GC_FROM = 1 << 16


def _fields_ok(group: str) -> bool:
    """True when ``group`` is ``{field,field{field,...},...}:`` exactly as the encoder writes it:
    no spaces, nothing between a nested group and the next delimiter."""
    if not group.endswith("}:"):
        return False
    depth, prev = 0, ""
    tokens = list(_TOKEN.finditer(group[:-1]))
    for n, match in enumerate(tokens):
        tok = match.group()
        if tok == "{":
            if prev not in ("", "name"):
                return False
            depth, prev = depth + 1, "open"
        elif tok in ("}", ","):
            if prev not in ("name", "close"):
                return False
            if tok == "}":
                depth, prev = depth - 1, "close"
                if depth == 0 and n != len(tokens) - 1:
                    return False
            else:
                prev = "comma"
        elif match.group("name"):
            if prev not in ("open", "comma"):
                return False
            prev = "name"
        else:
            return False
    return depth == 0 and prev == "close"


def _not_ours(text: str) -> bool:
    """True when ``text`` holds something Scratchy's encoder never writes and ``toons``
    would accept where :mod:`scratchy.toon` raises: raw tabs or carriage returns, blank lines
    (and trailing spaces), a field list of a table header not written as the encoder writes it."""
    if "\t" in text or "\r" in text or "\n\n" in text or " \n" in text or text[-1:] in " \n":
        return True  # the encoder writes no blank line, no trailing space and no raw tab or CR
    groups = set(_TABLE.findall(text))
    if groups <= _good:
        return False
    for group in groups - _good:
        if not _fields_ok(group):
            return True
    if len(_good) > 1024:
        _good.clear()
    _good.update(groups)
    return False


def accelerated() -> bool:
    """True when session files are decoded by ``toons`` (imported on the first call)."""
    global ENABLED, _toons
    if ENABLED is None:
        ENABLED = False
        if os.environ.get("SCRATCHY_TOON_ACCELERATOR", "1").strip().lower() not in (
            "0",
            "false",
            "no",
            "off",
        ):
            try:
                import toons
            except ImportError:
                pass
            else:
                _toons, ENABLED = toons, True
    elif ENABLED and _toons is None:
        try:
            import toons
        except ImportError:
            ENABLED = False
        else:
            _toons = toons
    return ENABLED


def decode_session(text: str) -> Any:
    """``scratchy.toon.loads(text)``, by ``toons`` when it is sure to agree (see the module
    doc). Raises :class:`scratchy.toon.ToonDecodeError` exactly as the pure decoder does."""
    if not accelerated() or not text.startswith(_START) or _not_ours(text):
        return toon.loads(text)
    paused = len(text) > _GC_FROM and gc.isenabled()
    if paused:
        gc.disable()  # the decoded values hold no cycles: the collector would only rescan them
    try:
        return _toons.loads(text)
    except Exception:  # any error of toons: the pure decoder gives ours (or the value)
        return toon.loads(text)
    finally:
        if paused:
            gc.enable()

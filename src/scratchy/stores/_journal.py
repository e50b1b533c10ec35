"""The append journal of a big TOON session file: ``<dir>/.journal/<id>.jsonl``.

Past :data:`JOURNAL_AT` bytes, a session file is no longer rewritten for every turn: the new
messages go to the session's journal as one record per write, and the journal is folded into the
file (one atomic rewrite) when it passes :data:`FOLD_AT` times the file's size. A record is one
line::

    <crc32 of the JSON, 8 hex digits> {"b":"<base>","n":<count before>,"k":<count added>,
                                       "h":{<the full header after this write>},"m":[<messages>]}

``b`` names the file the journal extends (its message count, created_at and updated_at, as
stored in the file itself, so a copied directory keeps its journal). A fold writes a new file,
whose base differs, and only then removes the journal: a journal left over by a killed fold
names the old base and is ignored. Records are read in order while each one's checksum is right
and it continues the previous one (same base, ``n`` = the running count); the first that does
not, a torn tail, ends the journal and is dropped by the next write.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

JOURNAL_DIR = ".journal"
JOURNAL_SUFFIX = ".jsonl"
JOURNAL_AT = 256 * 1024
"""A session file at least this big takes new turns in its journal instead of a rewrite."""
FOLD_AT = 1.0
"""The journal is folded into the file when it would pass this fraction of the file's size
(amortized, a turn then costs about 3x its size in bytes written)."""


@dataclass(slots=True)
class JournalState:
    """What was read of one journal (all of it, or incrementally)."""

    ino: int
    length: int
    """Bytes of valid records (a torn tail after them is not counted)."""
    base: str
    total: int
    """Messages of the session: the file's plus the journal's."""
    header: dict[str, Any] | None
    """The header stored by the last valid record (None: no record)."""


def base_of(count: int | None, created: str, updated: str) -> str:
    """The token naming one write of a session file (see the module docstring)."""
    return f"{count}|{created}|{updated}"


def encode_record(base: str, count: int, header: dict[str, Any], messages: list[Any]) -> bytes:
    """One journal line adding ``messages`` after ``count`` messages of ``base``."""
    payload = (
        '{"b":'
        + json.dumps(base)
        + f',"n":{count},"k":{len(messages)},"h":'
        + json.dumps(header, ensure_ascii=False, separators=(",", ":"))
        + ',"m":'
        + json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
        + "}"
    ).encode("utf-8")
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def scan(data: bytes, base: str, total: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Valid records of ``data`` continuing ``total`` messages of ``base``.

    Returns ``(valid bytes, new total, [(start, end) of each record's JSON])``."""
    head = b'{"b":' + json.dumps(base).encode("utf-8") + b',"n":'
    view = memoryview(data)
    spans: list[tuple[int, int]] = []
    pos, size = 0, len(data)
    while pos < size:
        nl = data.find(b"\n", pos)
        if nl < 0 or nl - pos < 10 or data[pos + 8] != 0x20:
            break
        try:
            crc = int(data[pos : pos + 8], 16)
        except ValueError:
            break
        start = pos + 9
        if zlib.crc32(view[start:nl]) != crc:
            break
        expect = head + b"%d" % total + b',"k":'
        if not data.startswith(expect, start):
            break
        at = start + len(expect)
        comma = data.find(b",", at, at + 21)
        try:
            added = int(data[at:comma]) if comma > at else -1
        except ValueError:
            break
        if added < 0:
            break
        total += added
        spans.append((start, nl))
        pos = nl + 1
    return pos, total, spans


def parse(data: bytes, span: tuple[int, int]) -> dict[str, Any]:
    """The JSON of one record (its checksum already verified by :func:`scan`)."""
    return json.loads(data[span[0] : span[1]])

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
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
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


def read(
    path: Path, base: str, count: int, prev: JournalState | None, messages: list[Any] | None
) -> JournalState:
    """The journal at ``path`` extending ``count`` messages of ``base`` (``ino`` 0: none).

    With ``messages``, the whole journal is read and its messages added to it; otherwise only
    what follows ``prev`` (what this process read last) when it is the same journal."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if (
                messages is None
                and prev is not None
                and prev.ino == st.st_ino
                and prev.base == base
                and st.st_size >= prev.length
            ):
                if st.st_size == prev.length:
                    return prev
                f.seek(prev.length)
                offset, total, header = prev.length, prev.total, prev.header
            else:
                offset, total, header = 0, count, None
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return JournalState(0, 0, base, count, None)
    valid, total, spans = scan(data, base, total)
    if spans:
        if messages is not None:
            for span in spans:
                messages.extend(parse(data, span)["m"])
        header = parse(data, spans[-1])["h"]
    return JournalState(st.st_ino, offset + valid, base, total, header)


def append(
    path: Path, state: JournalState, record: bytes, header: dict[str, Any], added: int
) -> JournalState:
    """Write ``record`` after the valid records of ``state`` (a torn tail, or the records of
    an older file, are dropped first) and fsync it; the caller holds the session's lock."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
    except FileExistsError:
        fd = os.open(path, flags)
        created = False
    try:
        st = os.fstat(fd)
        keep = state.length if st.st_ino == state.ino else 0
        if st.st_size != keep:
            os.ftruncate(fd, keep)
        view = memoryview(record)
        at = keep
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:  # the new name must survive a crash too
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return JournalState(st.st_ino, keep + len(record), state.base, state.total + added, header)

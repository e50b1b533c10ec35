"""The pieces of a session file's layout that do not depend on the store: how a message and
the header are encoded, what names one write of a file (its version), and the catalog rows
that cache headers for listing (see :mod:`scratchy.stores.toon_files`)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import toon
from ..messages import Message
from .base import SessionInfo, local_iso


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _version(key: tuple[int, int, int]) -> str:
    """An opaque version naming one write of a file (its mtime, inode and size, in hex)."""
    return f"{key[2]:x}-{key[0]:x}-{key[1]:x}"


def _tz_stamp() -> list[Any]:
    """Identifies the local time zone, which the catalog's local times depend on."""
    return [time.timezone, time.altzone, list(time.tzname)]


def encode_message(msg: Message) -> str:
    """Encode one message as a TOON list item at depth 1 (``  - role: ...``)."""
    if next(iter(msg)) != "role":
        msg = {"role": msg["role"], **msg}  # type: ignore[typeddict-item]
    lines = toon.dumps(msg).split("\n")
    return "  - " + lines[0] + "".join("\n    " + line for line in lines[1:])


def encode_header(header: dict[str, Any]) -> str:
    """Encode the header fields (everything but ``messages``)."""
    return toon.dumps(header)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _row(info: SessionInfo, key: list[int]) -> list[Any]:
    local = info.local_times or (local_iso(info.created_at), local_iso(info.updated_at))
    return [
        key,
        info.created_at.isoformat(),
        info.updated_at.isoformat(),
        info.message_count,
        info.title,
        info.error,
        local[0],
        local[1],
        info.version,
        info.size,
        info.metadata.get("usage") or {},  # so that listings show token and cost totals
    ]


def _info_from_row(session_id: str, row: list[Any]) -> SessionInfo:
    key = row[0]
    return SessionInfo(
        session_id,
        datetime.fromisoformat(row[1]),
        datetime.fromisoformat(row[2]),
        row[3],
        row[4],
        row[9] if len(row) > 9 else key[1],
        row[8] if len(row) > 9 and row[8] else _version(key),
        row[5],
        {"usage": row[10]} if len(row) > 10 and row[10] else {},
        (row[6], row[7]),
    )

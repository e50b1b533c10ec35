"""Encoding helpers shared by the database session stores (SQLite, Redis, PostgreSQL).

The store contract itself (conflicts, titles, usage, trash, search plumbing) is written once, in
:class:`~scratchy.stores.base.BaseStore`.

Messages are stored as compact JSON text, one value per message, so that an append writes only
the new messages and a load parses one JSON array. Everything here is pure Python: importing it
imports no database driver.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import SessionCorruptedError, StoreUnavailableError
from ..messages import ROLES, Message


def encode(message: Message) -> str:
    """One message as compact JSON (ASCII escapes only where UTF-8 cannot carry the text)."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: keep them as \\udxxx escapes
            text = json.dumps(message, separators=(",", ":"), allow_nan=False)
    return text


def decode_all(rows: list[str], where: str) -> list[Message]:
    """Parse stored message texts; a bad one raises ``SessionCorruptedError`` naming it."""
    try:
        messages = json.loads("[" + ",".join(rows) + "]")
    except ValueError:
        messages = None
    if messages is None or len(messages) != len(rows):
        for i, row in enumerate(rows):
            try:
                json.loads(row)
            except ValueError as exc:
                raise corrupted(where, f"message {i} is not valid JSON ({exc})") from None
        raise corrupted(where, "the stored messages cannot be parsed")
    check_messages(messages, where)
    return messages


def check_messages(messages: list[Any], where: str) -> None:
    """Raise ``SessionCorruptedError`` unless every item looks like a chat message."""
    for i, msg in enumerate(messages):
        if type(msg) is not dict or msg.get("role") not in ROLES:
            raise corrupted(where, f"message {i} is not a chat message with a valid 'role'")


def corrupted(where: str, reason: str) -> SessionCorruptedError:
    """The error for a stored session that cannot be read."""
    return SessionCorruptedError(
        f"{where}: {reason}. Delete the session (SessionManager.delete_session) or repair it",
        path=where,
    )


def first_difference(stored: list[str], new: list[str]) -> int:
    """Index of the first position where two encoded message lists differ."""
    n = min(len(stored), len(new))
    for i in range(n):
        if stored[i] != new[i]:
            return i
    return n


def to_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken as local time)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone()
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """Fixed-width UTC ISO-8601 text, so that text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """Parse :func:`iso` output (or any ISO-8601 text) as an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    return to_utc(value) or value


def mask_url(url: str) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*:/"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def pop_params(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Remove Scratchy's own query parameters from ``url``; returns the rest and those found."""
    parts = urlsplit(url)
    kept, found = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in names:
            found[key] = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), found


def unavailable(
    what: str, location: str, exc: BaseException | str, extra: str = ""
) -> StoreUnavailableError:
    """The error for a store that cannot be reached, with what to do about it."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if len(reason) > 200:
        reason = reason[:199] + "…"
    return StoreUnavailableError(
        f"Cannot reach the {what} session store at {location} ({reason}): "
        f"is the server running? Start it or check the URL{extra}"
    )


def load_json_object(text: Any) -> dict[str, Any]:
    """A metadata dict from stored JSON text ({} when empty or not an object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def retry_busy(step: Callable[[], object], budget_s: float = 30.0) -> None:
    """Run ``step``, retrying while SQLite reports the database busy or locked.

    Switching a database to WAL and the first migration take locks for which SQLite does
    not always call its busy handler (two processes opening a new database at once get
    "database is locked" at once): retry those with a short back-off within the budget.
    """
    import sqlite3

    deadline = time.monotonic() + budget_s
    pause = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)

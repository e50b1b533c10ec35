"""Helpers shared by the database session stores (SQLite, Redis, PostgreSQL).

Messages are stored as compact JSON text, one value per message, so that an append writes only
the new messages and a load parses one JSON array. Everything here is pure Python: importing it
imports no database driver.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import (
    SessionConflictError,
    SessionCorruptedError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ..messages import ROLES, Message, text_of
from .base import make_title

WORD = re.compile(r"\w+", re.UNICODE)


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


def search_text(message: Message) -> str:
    """The searchable text of a message: content and tool calls, with NUL characters removed."""
    parts = [text_of(message)]
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    text = "\n".join(p for p in parts if p).replace("\x00", " ")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def query_words(query: str) -> list[str]:
    """The words of a search query (letters, digits and ``_``)."""
    return WORD.findall(query)


def fold(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (as SQLite's ``remove_diacritics``)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def replace_title(old: str, messages: list[Message]) -> str:
    """The title after a rewrite: kept while a user message remains, else recomputed."""
    if old and any(m.get("role") == "user" for m in messages):
        return old
    return make_title(messages)


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


def count_conflict(session_id: str, expected: int, actual: int) -> SessionConflictError:
    """``append(expected_count=...)`` found another count."""
    return SessionConflictError(
        f"Session '{session_id}' has {actual} messages, not the {expected} expected: another "
        "writer changed it. Load it again and retry.",
        session_id=session_id,
        expected=expected,
        actual=actual,
    )


def replace_conflict(session_id: str, new: int, stored: int) -> SessionConflictError:
    """``replace`` would drop messages another writer stored."""
    return SessionConflictError(
        f"Session '{session_id}' was changed by another writer since it was read here (it now "
        f"has {stored} messages): saving would drop them. Load it again, use append(), or pass "
        "force=True to overwrite.",
        session_id=session_id,
        expected=new,
        actual=stored,
    )


def restore_conflict(session_id: str) -> SessionConflictError:
    """``restore`` found a live session with the same id."""
    return SessionConflictError(
        f"Cannot restore '{session_id}': a session with that id exists; delete or rename it first",
        session_id=session_id,
        expected=0,
        actual=-1,
    )


def not_in_trash(session_id: str) -> SessionNotFoundError:
    """``restore`` found nothing to restore."""
    return SessionNotFoundError(f"Session '{session_id}' is not in the trash (see list_trash())")


class SeenVersions:
    """The version of each session this process last read or wrote (for ``replace`` checks)."""

    def __init__(self) -> None:
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> str | None:
        """The version last seen, or None."""
        with self._lock:
            return self._versions.get(session_id)

    def set(self, session_id: str, version: str) -> None:
        """Remember ``version`` as seen."""
        with self._lock:
            self._versions[session_id] = version

    def forget(self, session_id: str) -> None:
        """Forget a session (deleted)."""
        with self._lock:
            self._versions.pop(session_id, None)


def load_json_object(text: Any) -> dict[str, Any]:
    """A metadata dict from stored JSON text ({} when empty or not an object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

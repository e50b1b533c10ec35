"""The ``SessionStore`` protocol that every session backend implements, and shared helpers.

A store keeps, per session id, an ordered list of messages plus a small header (created/updated
times, title, metadata). The operations and their guarantees are the same for every backend:

* ``append(id, messages, expected_count=None)`` adds messages atomically under the store's
  cross-process lock. Nothing another writer added is lost or duplicated. With
  ``expected_count`` it raises :class:`~scratchy.errors.SessionConflictError` unless the session
  holds exactly that many messages (compare-and-append).
* ``replace(id, messages, force=False)`` rewrites the whole list atomically. When this process
  has seen the session before and another writer has changed it since, the new list must extend
  what is stored now; otherwise it raises ``SessionConflictError`` instead of silently dropping
  the other writer's messages. ``force=True`` overwrites regardless.
* ``load``/``info``/``exists``/``delete``/``list`` never see a partial write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidSessionIdError
from ..messages import Message, text_of

SESSION_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_ID_RE = re.compile(SESSION_ID_PATTERN)
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
TITLE_LENGTH = 60


def validate_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is a safe name, else raise ``InvalidSessionIdError``.

    Allowed: 1-128 characters from letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit, not ending with ``.``, and not a reserved device name (``con``, ``nul``...).
    """
    hint = (
        f"session ids must match {SESSION_ID_PATTERN} (letters, digits, '.', '_', '-'; "
        "start with a letter or digit; at most 128 characters), e.g. 'code_review_auth_module'"
    )
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(f"Invalid session id {session_id!r}: expected a string; {hint}")
    if not _ID_RE.fullmatch(session_id) or session_id.endswith("."):
        shown = session_id if len(session_id) <= 40 else session_id[:40] + "..."
        raise InvalidSessionIdError(f"Invalid session id {shown!r}: {hint}")
    if session_id.split(".")[0].lower() in _RESERVED:
        raise InvalidSessionIdError(
            f"Invalid session id {session_id!r}: reserved device name; {hint}"
        )
    return session_id


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO-8601 timestamp; naive values are taken as local time. None when invalid."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return dt.astimezone() if dt.tzinfo is None else dt


def local_iso(dt: datetime) -> str:
    """Naive local ISO-8601 (seconds), comparable with ``datetime.now()`` as the docs do."""
    return datetime.fromtimestamp(dt.timestamp()).isoformat(timespec="seconds")


def make_title(messages: list[Message]) -> str:
    """A short title: the first line of the first user message, cut to ~60 characters."""
    for msg in messages:
        if msg.get("role") == "user":
            text = " ".join(text_of(msg).split())
            if text:
                return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"
    return ""


@dataclass(slots=True)
class SessionInfo:
    """What a store knows about one session without reading its messages."""

    id: str
    created_at: datetime
    updated_at: datetime
    message_count: int | None
    """None when the stored session cannot be read (see ``error``)."""
    title: str = ""
    size: int = 0
    """Bytes used by the stored session (0 where the backend cannot tell cheaply)."""
    version: str = ""
    """An opaque token that changes with every write."""
    error: str | None = None
    """Set when the stored session is corrupted; the message says what is wrong."""
    metadata: dict[str, Any] = field(default_factory=dict)
    local_times: tuple[str, str] | None = None
    """``(created, updated)`` as naive local ISO strings, when a store has them at hand."""

    def as_dict(self) -> dict[str, Any]:
        """The dict ``SessionManager.list_sessions()`` returns (times as naive local ISO)."""
        created, updated = self.local_times or (
            local_iso(self.created_at),
            local_iso(self.updated_at),
        )
        return {
            "id": self.id,
            "title": self.title,
            "created_at": created,
            "updated_at": updated,
            "message_count": self.message_count,
            "size": self.size,
            "corrupted": self.error is not None,
            "error": self.error,
        }


@dataclass(slots=True)
class StoredSession:
    """A session as loaded from a store: its messages and its header."""

    info: SessionInfo
    messages: list[Message]


@dataclass(slots=True)
class TrashedSession:
    """A deleted session waiting in the trash."""

    id: str
    deleted_at: datetime
    message_count: int | None
    title: str = ""
    key: str = ""
    """Store-specific handle of this trash entry (several deletions of one id may coexist)."""


@dataclass(slots=True)
class SearchHit:
    """One message matching a search."""

    session_id: str
    index: int
    """Position of the message in the session."""
    role: str
    snippet: str
    """The text around the match, matched terms wrapped in ``[`` and ``]``."""
    score: float = 0.0
    """Higher is better (store-specific scale)."""


@runtime_checkable
class SessionStore(Protocol):
    """A session backend. See the module docstring for the guarantees each method gives."""

    location: str
    """Where the sessions live (a directory, or a URL with the password masked)."""

    def load(self, session_id: str) -> StoredSession | None:
        """The session, or None when it does not exist."""
        ...

    def info(self, session_id: str) -> SessionInfo | None:
        """The session's header without its messages, or None when it does not exist."""
        ...

    def exists(self, session_id: str) -> bool:
        """True when the session exists (even if it is corrupted)."""
        ...

    def append(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Add messages (creating the session if needed); returns the new header."""
        ...

    def replace(
        self,
        session_id: str,
        messages: list[Message],
        *,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Rewrite the whole session; see the module docstring for conflicts."""
        ...

    def delete(self, session_id: str) -> bool:
        """Move the session to the trash; False when it did not exist."""
        ...

    def list(self) -> list[SessionInfo]:
        """Every session's header, corrupted ones flagged with ``error``."""
        ...

    def list_trash(self) -> list[TrashedSession]:
        """Sessions in the trash, most recently deleted first."""
        ...

    def restore(self, session_id: str) -> SessionInfo:
        """Bring back the most recently deleted session ``session_id``.

        Raises ``SessionNotFoundError`` when it is not in the trash and ``SessionConflictError``
        when a live session already has that id.
        """
        ...

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Delete from the trash for good: one id's entries, entries deleted longer ago than
        ``older_than``, or everything when both are None. Returns what was removed."""
        ...

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Full-text search over every live session's messages, best match first."""
        ...

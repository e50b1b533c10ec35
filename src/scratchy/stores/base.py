"""The session store contract, implemented once over a few backend primitives.

A store keeps, per session id, an ordered list of messages plus a small header (created/updated
times, title, metadata, token usage) and a **version**: an opaque token that changes with every
write. Nothing about what a caller has seen is remembered by the store; a caller that wants a
compare-and-swap names the version it read:

* ``append(id, messages, expected_version=None, expected_count=None, usage=None)`` adds messages
  atomically (cross-process lock or transaction). Nothing another writer added is lost or
  duplicated. ``expected_version``/``expected_count`` make it conditional. ``usage`` (token
  counts of this turn) is added to the stored totals inside the same lock or transaction.
* ``replace(id, messages, expected_version=None)`` rewrites the whole list atomically. With
  ``expected_version``, a session changed since that version is only overwritten when the new
  list extends what is stored now (nothing would be lost); otherwise
  :class:`~scratchy.errors.SessionConflictError` names both versions and nothing is written.
* ``load``/``info``/``exists``/``delete``/``list``/``list_page`` never see a partial write.

:class:`BaseStore` implements all of that (conflicts, titles, usage totals, trash, fork, paging,
search plumbing, owner scoping) once; each backend supplies only its primitives (see the
"primitives" section of the class). :class:`AsyncStore` (``store.aio``) gives the same methods as
coroutines that run in worker threads, so an event loop never blocks on store I/O.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from ..errors import (
    InvalidSessionIdError,
    SessionBusyError,
    SessionConflictError,
    SessionCorruptedError,
    SessionNotFoundError,
    UsageError,
)
from ..messages import Message, text_of, validate_messages
from .search_text import (  # noqa: F401 - the backends' search helpers, re-exported
    fold,
    fts5_query,
    join_cjk,
    query_terms,
    search_text,
    split_cjk,
)

T = TypeVar("T")

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


@dataclass(slots=True)
class SessionPage:
    """One page of :meth:`BaseStore.list_page`: headers, newest activity first."""

    items: list[SessionInfo]
    next_cursor: str | None
    """Pass it back as ``cursor=`` for the next page; None on the last page."""


@dataclass(slots=True)
class Header:
    """The header fields a write stores (computed once, by :class:`BaseStore`)."""

    title: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]


class Writer(Protocol):
    """A backend's view of one session inside an exclusive write (lock or transaction)."""

    def current(self) -> SessionInfo | None:
        """The stored header, or None when the session does not exist (may raise
        ``SessionCorruptedError``)."""
        ...

    def messages(self) -> list[Message]:
        """The stored messages ([] when the session does not exist)."""
        ...

    def append(self, new: list[Message], header: Header) -> SessionInfo:
        """Store ``new`` after the stored messages, with ``header``."""
        ...

    def rewrite(self, messages: list[Message], header: Header) -> SessionInfo:
        """Store ``messages`` in place of the stored ones, with ``header``."""
        ...

    def set_header(self, header: Header) -> SessionInfo:
        """Store a new header, messages unchanged."""
        ...

    def trash(self) -> bool:
        """Move the session to the trash; False when it does not exist."""
        ...

    def untrash(self, entry: TrashedSession) -> SessionInfo:
        """Bring ``entry`` back as this (absent) session."""
        ...


# -- conflicts and other errors, written once for every backend --------------------------------


def version_conflict(
    session_id: str, expected: str, actual: str, stored: int, new: int
) -> SessionConflictError:
    """A conditional write found another version than the one it names."""
    if not actual:
        now = "it no longer exists"
    elif not expected:
        now = f"it already exists (version {actual}, {stored} messages)"
    else:
        now = f"it is now at version {actual} with {stored} messages"
    return SessionConflictError(
        f"Session '{session_id}' was changed by another writer since version "
        f"{expected or '(none)'} was read ({now}): saving would drop what changed. Load it "
        "again, or overwrite it on purpose (force=True).",
        session_id=session_id,
        expected=new,
        actual=stored,
        expected_version=expected,
        actual_version=actual,
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


def not_in_trash(session_id: str) -> SessionNotFoundError:
    """``restore`` found nothing to restore."""
    return SessionNotFoundError(f"Session '{session_id}' is not in the trash (see list_trash())")


def busy(key: str) -> SessionBusyError:
    """A session's turn lock is held elsewhere (``key`` may carry an owner prefix)."""
    shown = key.rsplit("/", 1)[-1]
    return SessionBusyError(
        f"Session '{shown}' is running a turn elsewhere; retry when it ends", session_id=shown
    )


def restore_conflict(session_id: str) -> SessionConflictError:
    """``restore`` found a live session with the same id."""
    return SessionConflictError(
        f"Cannot restore '{session_id}': a session with that id exists; delete or rename it first",
        session_id=session_id,
    )


# -- cursors -------------------------------------------------------------------------------------


def encode_cursor(info: SessionInfo) -> str:
    """An opaque keyset cursor after ``info`` (newest-first order: updated_at, then id)."""
    raw = f"{info.updated_at.astimezone(UTC).isoformat(timespec='microseconds')}|{info.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(updated_at, id)`` of a cursor; ``UsageError`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, sid = raw.partition("|")
        return datetime.fromisoformat(when), sid
    except (ValueError, UnicodeDecodeError):
        raise UsageError(
            f"Invalid cursor {cursor[:40]!r}: pass the next_cursor of the previous page"
        ) from None


def _page_key(info: SessionInfo) -> tuple[datetime, str]:
    return info.updated_at, info.id


def _extends(new: list[Message], stored: list[Message]) -> bool:
    return len(new) >= len(stored) and new[: len(stored)] == stored


def _add_usage(old: Any, delta: dict[str, int] | None) -> dict[str, int] | None:
    totals = (
        {k: int(v) for k, v in old.items() if isinstance(v, int)} if isinstance(old, dict) else {}
    )
    for key, value in (delta or {}).items():
        totals[key] = totals.get(key, 0) + int(value)
    return totals or None


@runtime_checkable
class SessionStore(Protocol):
    """What the rest of Scratchy uses of a store (see the module docstring). Every backend is a
    :class:`BaseStore`; this protocol is for type checks and third-party stores."""

    location: str
    capabilities: frozenset[str]

    def load(self, session_id: str) -> StoredSession | None: ...
    def info(self, session_id: str) -> SessionInfo | None: ...
    def exists(self, session_id: str) -> bool: ...
    def append(self, session_id: str, messages: list[Message], **options: Any) -> SessionInfo: ...
    def replace(self, session_id: str, messages: list[Message], **options: Any) -> SessionInfo: ...
    def delete(self, session_id: str) -> bool: ...
    def list(self) -> list[SessionInfo]: ...
    def list_page(self, *, limit: int = 50, cursor: str | None = None) -> SessionPage: ...
    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]: ...


class BaseStore:
    """The store contract over backend primitives. Thread-safe when the primitives are.

    Subclasses implement the primitives below (``_transact``, ``_read``, ``_read_info``,
    ``_exists``, ``_list``, and, per capability, ``_trash_entries``/``_purge`` for
    ``"trash"``, ``_search`` for ``"search"``, ``_turn_lock``); everything else is here.
    Keys passed to primitives are session ids, prefixed by the owner's namespace when the store
    is :meth:`scoped`.
    """

    location: str = ""
    capabilities: ClassVar[frozenset[str]] = frozenset({"trash", "search"})
    """Optional features this backend has: ``"trash"``, ``"search"``."""
    _ns: str = ""

    # -- primitives -------------------------------------------------------------------------

    def _transact(self, key: str, fn: Callable[[Writer], T]) -> T:
        """Run ``fn`` with a :class:`Writer` for ``key``, exclusively (other writers of that
        session wait), and make what it wrote durable before returning."""
        raise NotImplementedError

    def _read(self, key: str) -> StoredSession | None:
        """The session (header and messages, one consistent snapshot), or None."""
        raise NotImplementedError

    def _read_info(self, key: str) -> SessionInfo | None:
        """The header, or None; a corrupted session gives a header with ``error`` set."""
        raise NotImplementedError

    def _exists(self, key: str) -> bool:
        raise NotImplementedError

    def _list(self, ns: str) -> list[SessionInfo]:
        """Every header whose key is in namespace ``ns`` ("" = the root: keys without "/")."""
        raise NotImplementedError

    def _page(self, ns: str, limit: int, after: tuple[datetime, str] | None) -> list[SessionInfo]:
        """Up to ``limit`` headers of ``ns`` older than ``after`` in (updated_at, key) order,
        newest first. Backends with an index override this to cost the page only."""
        rows = sorted(self._list(ns), key=_page_key, reverse=True)
        if after is not None:
            rows = [r for r in rows if _page_key(r) < after]
        return rows[:limit]

    def _trash_entries(self, ns: str, key: str | None) -> list[TrashedSession]:
        """Trashed sessions of ``ns`` (of one key when given), most recently deleted first."""
        raise NotImplementedError

    def _purge(self, entries: list[TrashedSession]) -> None:
        raise NotImplementedError

    def _search(self, ns: str, terms: list[list[str]], limit: int) -> list[SearchHit]:
        raise NotImplementedError

    def _turn_lock(self, key: str, timeout: float | None, lease: float) -> Any:
        """A context manager held while a turn runs on ``key``; raises ``SessionBusyError``
        when it cannot be had within ``timeout`` seconds (None: wait as long as it takes)."""
        raise NotImplementedError

    # -- keys and owners ----------------------------------------------------------------------

    def _key(self, session_id: str) -> str:
        return self._ns + validate_session_id(session_id)

    def _out(self, info: SessionInfo) -> SessionInfo:
        if self._ns and info.id.startswith(self._ns):
            info.id = info.id[len(self._ns) :]
        return info

    def scoped(self, owner: str) -> BaseStore:
        """This store restricted to ``owner``'s sessions: the same id under two owners is two
        sessions, and nothing of another owner's is listed, searched or reachable."""
        validate_session_id(owner)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.__dict__.pop("aio", None)
        view._ns = f"{self._ns}{owner}/"
        return view

    @functools.cached_property
    def aio(self) -> AsyncStore:
        """The same operations as coroutines, run in worker threads (never block the loop)."""
        return AsyncStore(self)

    # -- reading --------------------------------------------------------------------------------

    def load(self, session_id: str) -> StoredSession | None:
        """The session, or None when it does not exist (``info.version`` is what was read)."""
        stored = self._read(self._key(session_id))
        if stored is not None:
            self._out(stored.info)
        return stored

    def info(self, session_id: str) -> SessionInfo | None:
        """The session's header without its messages, or None when it does not exist."""
        info = self._read_info(self._key(session_id))
        return None if info is None else self._out(info)

    def exists(self, session_id: str) -> bool:
        """True when the session exists (even if it is corrupted)."""
        return self._exists(self._key(session_id))

    def list(self) -> list[SessionInfo]:
        """Every session's header, newest activity first; corrupted ones flagged with ``error``."""
        rows = self._list(self._ns)
        rows.sort(key=_page_key, reverse=True)
        return [self._out(r) for r in rows]

    def list_dicts(self) -> list[dict[str, Any]]:
        """What ``SessionManager.list_sessions()`` returns: ``as_dict()`` of every header."""
        return [info.as_dict() for info in self.list()]

    def list_page(self, *, limit: int = 50, cursor: str | None = None) -> SessionPage:
        """A page of headers, newest activity first (keyset paging: pass ``next_cursor``)."""
        if not 1 <= limit <= 1000:
            raise UsageError(f"limit must be between 1 and 1000, not {limit}")
        after = None
        if cursor:
            when, sid = decode_cursor(cursor)
            after = (when, self._ns + sid)
        rows = self._page(self._ns, limit + 1, after)
        more = len(rows) > limit
        items = [self._out(r) for r in rows[:limit]]
        return SessionPage(items, encode_cursor(items[-1]) if more and items else None)

    # -- writing --------------------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_version: str | None = None,
        expected_count: int | None = None,
        metadata: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
    ) -> SessionInfo:
        """Add ``messages`` at the end (creating the session); returns the new header.

        ``expected_version`` / ``expected_count``: only if the session is still at that version
        ("" = absent) or holds that many messages, else ``SessionConflictError``. ``metadata``
        replaces the stored metadata (its ``usage`` key excepted); ``usage`` is added to the
        stored token totals atomically.
        """
        key = self._key(session_id)
        new = validate_messages(messages)

        def write(w: Writer) -> SessionInfo:
            cur = w.current()
            count = (cur.message_count or 0) if cur else 0
            if expected_version is not None and (cur.version if cur else "") != expected_version:
                raise version_conflict(
                    session_id,
                    expected_version,
                    cur.version if cur else "",
                    count,
                    count + len(new),
                )
            if expected_count is not None and count != expected_count:
                raise count_conflict(session_id, expected_count, count)
            title = cur.title if cur and cur.title else make_title(new)
            return w.append(new, self._compose_header(cur, title, metadata, usage))

        return self._out(self._transact(key, write))

    def replace(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_version: str | None = None,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
        created_at: datetime | None = None,
    ) -> SessionInfo:
        """Rewrite the whole session atomically; returns the new header.

        With ``expected_version``, a session changed since that version is rewritten only when
        ``messages`` extends what is stored now; otherwise ``SessionConflictError`` (naming both
        versions) and nothing is written. ``force=True`` overwrites whatever is stored, even a
        corrupted session. ``created_at`` sets the creation time (copies between stores).
        """
        key = self._key(session_id)
        new = validate_messages(messages)

        def write(w: Writer) -> SessionInfo:
            try:
                cur = w.current()
            except SessionCorruptedError:
                if not force:
                    raise
                cur = None
            actual = cur.version if cur else ""
            if expected_version is not None and not force and actual != expected_version:
                stored = w.messages() if cur else []
                if cur is None or not _extends(new, stored):
                    raise version_conflict(
                        session_id, expected_version, actual, len(stored), len(new)
                    )
            old_title = cur.title if cur else ""
            title = old_title if old_title and any(m.get("role") == "user" for m in new) else ""
            header = self._compose_header(
                cur, title or make_title(new), metadata, usage, created_at
            )
            return w.rewrite(new, header)

        return self._out(self._transact(key, write))

    def update_header(
        self,
        session_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        expected_version: str | None = None,
    ) -> SessionInfo:
        """Change the title and/or metadata (``usage`` excepted), messages unchanged."""
        key = self._key(session_id)

        def write(w: Writer) -> SessionInfo:
            cur = w.current()
            if cur is None:
                raise SessionNotFoundError(f"No session '{session_id}'")
            if expected_version is not None and cur.version != expected_version:
                n = cur.message_count or 0
                raise version_conflict(session_id, expected_version, cur.version, n, n)
            new_title = cur.title if title is None else " ".join(str(title).split())[:200]
            return w.set_header(self._compose_header(cur, new_title, metadata, None))

        return self._out(self._transact(key, write))

    @staticmethod
    def _compose_header(
        cur: SessionInfo | None,
        title: str,
        metadata: dict[str, Any] | None,
        usage: dict[str, int] | None,
        created_at: datetime | None = None,
    ) -> Header:
        now = utcnow()
        old = cur.metadata if cur else {}
        meta = dict(metadata if metadata is not None else old)
        given = meta.pop("usage", None)
        totals = _add_usage(old.get("usage") if cur else given, usage)
        if totals:
            meta["usage"] = totals
        created = created_at or (cur.created_at if cur else now)
        return Header(title, created, now, meta)

    # -- trash, fork ----------------------------------------------------------------------------

    def delete(self, session_id: str) -> bool:
        """Move the session to the trash; False when it did not exist."""
        return self._transact(self._key(session_id), lambda w: w.trash())

    def list_trash(self) -> list[TrashedSession]:
        """Sessions in the trash, most recently deleted first."""
        entries = self._trash_entries(self._ns, None)
        for e in entries:
            e.id = e.id[len(self._ns) :] if self._ns else e.id
        return entries

    def restore(self, session_id: str) -> SessionInfo:
        """Bring back the most recently deleted ``session_id``.

        Raises ``SessionNotFoundError`` when it is not in the trash and ``SessionConflictError``
        when a live session has that id.
        """
        key = self._key(session_id)

        def write(w: Writer) -> SessionInfo:
            entries = self._trash_entries(self._ns, key)
            if not entries:
                raise not_in_trash(session_id)
            if w.current() is not None:
                raise restore_conflict(session_id)
            return w.untrash(entries[0])

        return self._out(self._transact(key, write))

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Delete from the trash for good: one id's entries, entries deleted longer ago than
        ``older_than``, or everything when both are None. Returns what was removed."""
        key = self._key(session_id) if session_id is not None else None
        cutoff = utcnow() - older_than if older_than is not None else None
        entries = [
            e
            for e in self._trash_entries(self._ns, key)
            if cutoff is None or e.deleted_at <= cutoff
        ]
        self._purge(entries)
        for e in entries:
            e.id = e.id[len(self._ns) :] if self._ns else e.id
        return entries

    def fork(self, source_id: str, new_id: str, *, at: int | None = None) -> SessionInfo:
        """Copy ``source_id`` (its first ``at`` messages, or all) to a new session ``new_id``.

        A cut that would separate a tool call from its results moves back to the assistant
        message that made the calls. ``SessionConflictError`` when ``new_id`` exists.
        """
        stored = self.load(source_id)
        if stored is None:
            raise SessionNotFoundError(f"No session '{source_id}' to fork")
        messages = stored.messages
        if at is not None:
            if at < 0:
                raise UsageError("at must be >= 0 (the number of messages to keep)")
            while 0 < at < len(messages) and messages[at].get("role") == "tool":
                at -= 1
            messages = messages[:at]
        validate_session_id(new_id)
        if self.exists(new_id):
            raise SessionConflictError(
                f"Session '{new_id}' already exists: choose another id for the fork",
                session_id=new_id,
            )
        meta = {"forked_from": {"id": source_id, "messages": len(messages)}}
        return self.replace(new_id, messages, expected_version="", metadata=meta)

    # -- search, turns ----------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Full-text search over every live session's messages, best match first. Every word
        must match (the last as a prefix); Chinese/Japanese/Korean text matches by character."""
        terms = query_terms(query)
        if not terms or limit <= 0 or "search" not in self.capabilities:
            return []
        hits = self._search(self._ns, terms, limit)
        for h in hits:
            if self._ns:
                h.session_id = h.session_id[len(self._ns) :]
            h.snippet = join_cjk(h.snippet)
        return hits

    @contextlib.contextmanager
    def turn_lock(
        self, session_id: str, *, timeout: float | None = 0, lease: float = 60
    ) -> Iterator[None]:
        """Hold the session's turn lock (one turn at a time across processes and machines).

        Raises ``SessionBusyError`` when another holder keeps it past ``timeout`` seconds. A
        holder that dies releases it (file locks and PostgreSQL sessions end with the process;
        Redis locks expire after ``lease`` seconds unless renewed).
        """
        with self._turn_lock(self._key(session_id), timeout, lease):
            yield

    def close_session(self, session_id: str) -> None:
        """Say that ``session_id`` is closed here (no more turns soon): the TOON file store
        folds a big session's journal into its file; the database stores have nothing to do."""

    def close(self) -> None:
        """Release connections and files (the store reopens them if used again)."""

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def file_turn_lock(lock_dir: Any, key: str, timeout: float | None) -> Iterator[None]:
    """A turn lock as a ``filelock`` file in ``lock_dir`` (the kernel drops it when its holder
    dies, so a killed worker never blocks the session)."""
    import os

    from filelock import FileLock, Timeout

    from ..errors import StoreUnavailableError

    try:
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailableError(
            f"Cannot create turn locks in {lock_dir} ({exc.strerror}): make it writable"
        ) from None
    name = key.replace("/", "%2F") + ".turn"
    lock = FileLock(
        os.path.join(lock_dir, name),
        timeout=-1 if timeout is None else timeout,
        thread_local=False,
    )
    try:
        lock.acquire()
    except Timeout:
        raise busy(key) from None
    try:
        yield
    finally:
        lock.release()


class AsyncStore:
    """A store's operations as coroutines, each run in a worker thread (``store.aio``)."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        if not callable(method) or name.startswith("_"):
            raise AttributeError(name)

        async def run(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        run.__name__ = name
        run.__doc__ = method.__doc__
        return run

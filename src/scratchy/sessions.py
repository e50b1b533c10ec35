"""``SessionManager``: save, load, list and delete named sessions.

The manager is a thin, documented front over a :class:`~scratchy.stores.base.SessionStore`. By
default the store is one TOON file per session in ``scratchy/session_history/`` under the current
working directory (or ``$SCRATCHY_SESSION_DIR``), exactly as the user guide shows.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import SessionError, UsageError
from .messages import Message
from .stores.base import (
    BaseStore,
    SearchHit,
    SessionInfo,
    SessionPage,
    TrashedSession,
    utcnow,
    validate_session_id,
)

__all__ = ["SessionManager", "DEFAULT_SESSION_DIR", "SESSION_DIR_ENV", "open_store"]

DEFAULT_SESSION_DIR = Path("scratchy") / "session_history"
SESSION_DIR_ENV = "SCRATCHY_SESSION_DIR"

_log = logging.getLogger(__name__)
_stores: dict[str, BaseStore] = {}
_stores_lock = threading.Lock()


def open_store(location: str | os.PathLike[str] | None = None) -> BaseStore:
    """The store for ``location``: a directory path (TOON files) or a database URL.

    One store object is shared per location in a process, to share connections and read caches;
    it keeps no state that decides what a write may do (versions are named by the caller).
    """
    if location is None:
        location = os.environ.get(SESSION_DIR_ENV) or DEFAULT_SESSION_DIR
    text = os.fspath(location)
    key = text if "://" in text else os.path.abspath(text)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            if "://" in text:
                from .stores import store_for_url

                store = store_for_url(text)
            else:
                from .stores.toon_files import TOONFileStore

                store = TOONFileStore(key)
            _stores[key] = store
        return store


class SessionManager:
    """Save, load, list and delete sessions.

    Args:
        directory: Where sessions live: a directory (default ``scratchy/session_history`` under
            the current directory, or ``$SCRATCHY_SESSION_DIR``), or a store URL.
        dir: Same as ``directory`` (the name used by the original Scratchy).
        store: A ready ``SessionStore`` to use instead.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        dir: str | os.PathLike[str] | None = None,  # noqa: A002 - the documented name
        store: BaseStore | None = None,
    ) -> None:
        self.store: BaseStore = store or open_store(directory if directory is not None else dir)
        self._versions: dict[str, str] = {}  # what *this* manager last loaded or saved
        self._lock = threading.Lock()

    def _remember(self, session_id: str, version: str | None) -> None:
        with self._lock:
            if version is None:
                self._versions.pop(session_id, None)
            else:
                self._versions[session_id] = version

    @property
    def location(self) -> str:
        """Where the sessions are stored (a directory or a URL without password)."""
        return self.store.location

    def __repr__(self) -> str:
        return f"SessionManager({self.location!r})"

    def save_session(
        self,
        session_id: str,
        messages: list[Message],
        *,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Save the whole message list of ``session_id`` atomically.

        ``created_at`` is kept across saves. When this manager loaded or saved the session
        before and anyone (another process, another manager, an agent) has changed it since,
        the new list must extend what is stored now; otherwise
        :class:`~scratchy.errors.SessionConflictError` is raised and nothing is written (load
        it again, or pass ``force=True`` to overwrite anyway). A session this manager never
        read is simply written; one it loaded as absent must still be absent, or extended.

        Raises:
            InvalidSessionIdError: ``session_id`` is not a safe name.
            InvalidMessageError: a message is not in the chat shape (names index and field).
            SessionConflictError: see above.
        """
        with self._lock:
            expected = None if force else self._versions.get(session_id)
        info = self.store.replace(
            session_id, messages, expected_version=expected, force=force, metadata=metadata
        )
        self._remember(session_id, info.version)
        return info

    def append_messages(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_count: int | None = None,
        expected_version: str | None = None,
    ) -> SessionInfo:
        """Add messages to a session (created if absent) under a cross-process lock.

        Nothing another process wrote is lost or duplicated. With ``expected_count`` (or
        ``expected_version``, from ``session_info(...).version``), the append only happens when
        the session holds exactly that many messages (is at that version); otherwise
        :class:`~scratchy.errors.SessionConflictError` is raised.
        """
        return self.store.append(
            session_id,
            messages,
            expected_count=expected_count,
            expected_version=expected_version,
        )

    def create_session(self, session_id: str) -> SessionInfo:
        """Make sure ``session_id`` exists on disk (with no messages if it is new)."""
        info = self.store.info(session_id)
        return info if info is not None else self.store.append(session_id, [])

    def load_session(self, session_id: str) -> list[Message] | None:
        """The messages of ``session_id``, or None when it does not exist.

        Raises:
            SessionCorruptedError: the stored session cannot be read (names file and line).
        """
        stored = self.store.load(session_id)
        # "" = read as absent: a later save must not drop what someone else created meanwhile
        self._remember(session_id, stored.info.version if stored is not None else "")
        return stored.messages if stored is not None else None

    def session_info(self, session_id: str) -> SessionInfo | None:
        """The header of ``session_id`` (times, count, title) without its messages."""
        return self.store.info(session_id)

    def session_exists(self, session_id: str) -> bool:
        """True when ``session_id`` is stored (even if its file is corrupted)."""
        return self.store.exists(session_id)

    def list_sessions(self) -> list[dict[str, Any]]:
        """All sessions, newest activity first, as dicts.

        Keys: ``id``, ``title``, ``created_at`` and ``updated_at`` (naive local ISO-8601, as
        ``datetime.fromisoformat`` parses and ``datetime.now()`` compares), ``message_count``
        (None for a corrupted file), ``size``, ``corrupted`` and ``error``.
        """
        fast = getattr(self.store, "list_dicts", None)  # a third-party store may lack it
        return fast() if fast is not None else [i.as_dict() for i in self.store.list()]

    def list_page(self, *, limit: int = 50, cursor: str | None = None) -> SessionPage:
        """One page of session headers, newest activity first: ``page.items`` (``SessionInfo``)
        and ``page.next_cursor`` to pass as ``cursor=`` for the next page (None at the end)."""
        return self.store.list_page(limit=limit, cursor=cursor)

    def close_session(self, session_id: str) -> None:
        """Say that ``session_id`` is closed here: a big session's journal is folded into its
        ``.toon`` file (see the durability notes of the user guide). Safe to call at any time,
        from any process; the session can be used again afterwards."""
        self.store.close_session(session_id)

    def close_sessions(self, session_ids: list[str]) -> None:
        """:meth:`close_session` for each id; a session that cannot be folded now (corrupted,
        read-only directory) is logged and left as it is, since its journal keeps every turn."""
        for session_id in session_ids:
            try:
                self.store.close_session(session_id)
            except (SessionError, OSError) as exc:
                _log.warning("Could not fold session %r on close: %s", session_id, exc)

    def update_session(
        self, session_id: str, *, title: str | None = None, metadata: dict[str, Any] | None = None
    ) -> SessionInfo:
        """Rename a session (``title``) or replace its metadata; the messages are untouched."""
        return self.store.update_header(session_id, title=title, metadata=metadata)

    def delete_session(self, session_id: str, *, with_memories: bool = False) -> bool:
        """Move ``session_id`` to the trash; True when it existed. Works on corrupted files.

        Nothing is deleted for good here: see ``restore_session`` and ``purge``; except, with
        ``with_memories=True``, the memories taken from it (:mod:`scratchy.memory`).
        """
        self._remember(session_id, None)
        deleted = self.store.delete(session_id)
        if deleted and with_memories:
            from .memory import MemoryStore

            MemoryStore(self.store).forget_session(session_id)
        return deleted

    # -- trash, retention, fork, search ------------------------------------------------------

    def list_trash(self) -> list[TrashedSession]:
        """Deleted sessions waiting in the trash, most recently deleted first."""
        return self.store.list_trash()

    def restore_session(self, session_id: str) -> SessionInfo:
        """Bring back the most recently deleted ``session_id`` from the trash.

        Raises:
            SessionNotFoundError: it is not in the trash.
            SessionConflictError: a live session already has that id.
        """
        return self.store.restore(session_id)

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Empty the trash for good: one id, entries deleted before ``older_than`` ago, or all."""
        return self.store.purge(session_id, older_than=older_than)

    def cleanup(
        self, *, older_than: timedelta | None = None, empty: bool = False, dry_run: bool = True
    ) -> list[dict[str, Any]]:
        """Find sessions inactive for longer than ``older_than`` and/or with no messages.

        With ``dry_run=True`` (the default) nothing changes: the sessions that would go are
        returned. With ``dry_run=False`` they are moved to the trash (see ``restore_session``).
        Corrupted sessions are never selected.
        """
        if older_than is None and not empty:
            raise UsageError("cleanup() needs older_than=timedelta(...), empty=True, or both")
        cutoff = utcnow() - older_than if older_than is not None else None
        chosen = []
        for info in self.store.list():
            if info.error is not None:
                continue
            if cutoff is not None and info.updated_at > cutoff:
                continue
            if empty and info.message_count:
                continue
            chosen.append(info.as_dict())
        if not dry_run:
            for row in chosen:
                self.store.delete(row["id"])
        return chosen

    def fork_session(self, source_id: str, new_id: str, *, at: int | None = None) -> SessionInfo:
        """Copy ``source_id`` to a new session ``new_id`` (its first ``at`` messages, or all).

        A cut that would separate a tool call from its results moves back to the assistant
        message that made the calls.
        """
        return self.store.fork(source_id, new_id, at=at)

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Full-text search across all sessions, best match first.

        Each hit has ``session_id``, ``index`` (of the message), ``role``, ``snippet`` (matched
        words in ``[`` ``]``) and ``score``.
        """
        return self.store.search(query, limit=limit)

    @staticmethod
    def validate_id(session_id: str) -> str:
        """Return ``session_id`` or raise ``InvalidSessionIdError`` with the allowed pattern."""
        return validate_session_id(session_id)

"""Sessions in one SQLite database file: ``sqlite:///path/sessions.db``.

The URL follows the usual convention: what follows ``sqlite:///`` is the path, so
``sqlite:///sessions.db`` is relative to the current directory and ``sqlite:////var/db/s.db``
(four slashes) is absolute. The path is resolved when the store is opened.

Layout (schema version in ``PRAGMA user_version`` and the ``schema_migrations`` table):

* ``sessions``: one row per session (``pk``, ``id``, times as UTC ISO text, ``title``,
  ``metadata`` JSON, ``message_count``, ``size``, ``version``, ``deleted_at``). A live session has
  ``deleted_at`` NULL (a partial unique index keeps one live row per id); deleting sets it, so the
  trash is the same table and several deleted copies of an id can coexist.
* ``messages``: one row per message (``session_pk``, ``idx``, ``role``, ``data`` JSON, ``text``),
  so an append inserts only the new rows.
* ``messages_fts``: an FTS5 index over ``messages.text`` kept by triggers; search ranks with BM25.
* ``counters``: the global write counter; every write stores its next value as the session's
  ``version``, so versions never repeat, even across delete and re-create.

Writes run in ``BEGIN IMMEDIATE`` transactions, which serialise writers across threads and
processes (``busy_timeout`` waits for the lock); readers see a consistent snapshot (WAL mode).
Each thread uses its own connection. Commits are synchronous (``synchronous=FULL``): a write that
returned survives a crash of the process or the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailableError, UsageError
from ..messages import Message, validate_messages
from . import _db
from .base import (
    SearchHit,
    SessionInfo,
    StoredSession,
    TrashedSession,
    make_title,
    utcnow,
    validate_session_id,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]

BUSY_TIMEOUT_MS = 30_000
_HEADER = "id, created_at, updated_at, message_count, title, size, version, metadata"

# Each migration is a list of statements run in one transaction, in order. Never edit a released
# migration: add a new one (and a test that upgrades a database written by the previous version).
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "sessions and messages",
        [
            """CREATE TABLE sessions (
                pk INTEGER PRIMARY KEY,
                id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                title TEXT NOT NULL DEFAULT '',
                metadata TEXT NOT NULL DEFAULT '{}',
                message_count INTEGER NOT NULL DEFAULT 0,
                size INTEGER NOT NULL DEFAULT 0,
                version INTEGER NOT NULL,
                deleted_at TEXT
            )""",
            "CREATE UNIQUE INDEX sessions_live ON sessions(id) WHERE deleted_at IS NULL",
            "CREATE INDEX sessions_updated ON sessions(updated_at) WHERE deleted_at IS NULL",
            "CREATE INDEX sessions_trash ON sessions(deleted_at) WHERE deleted_at IS NOT NULL",
            """CREATE TABLE messages (
                mid INTEGER PRIMARY KEY,
                session_pk INTEGER NOT NULL REFERENCES sessions(pk) ON DELETE CASCADE,
                idx INTEGER NOT NULL,
                role TEXT NOT NULL,
                data TEXT NOT NULL,
                text TEXT NOT NULL,
                UNIQUE (session_pk, idx)
            )""",
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO counters VALUES ('version', 0)",
        ],
    ),
    (
        2,
        "full-text search (FTS5, BM25)",
        [
            """CREATE VIRTUAL TABLE messages_fts USING fts5(
                text, content='messages', content_rowid='mid',
                tokenize='unicode61 remove_diacritics 2'
            )""",
            """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
                INSERT INTO messages_fts(rowid, text) VALUES (new.mid, new.text);
            END""",
            """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, text)
                VALUES ('delete', old.mid, old.text);
            END""",
            "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def path_from_url(url: str) -> Path:
    """The database path of a ``sqlite:///...`` URL (absolute)."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep or not rest.startswith("/"):
        raise UsageError(
            f"Bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise UsageError(
            "The SQLite session store needs a database file (sqlite:///sessions.db); "
            "in-memory databases are not shared between connections"
        )
    return Path(path).expanduser().absolute()


class SQLiteStore:
    """Sessions in an SQLite database. Thread-safe; safe across processes.

    Args:
        url: ``sqlite:///path/to/sessions.db`` (the file and its directory are created).
    """

    def __init__(self, url: str) -> None:
        self.path = path_from_url(url)
        self.location = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._seen = _db.SeenVersions()
        self._pid = os.getpid()
        self._conn()  # create and migrate now: errors show up where the store is opened

    # -- connections and schema ----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._pid == os.getpid():
            return db
        if self._pid != os.getpid():  # forked: never share the parent's connections
            self._pid = os.getpid()
            self._connections = []
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._migrate(db)
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        self._local.db = db
        with self._lock:
            self._connections.append(db)
        return db

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        reason = " ".join(str(exc).split())
        return StoreUnavailableError(
            f"Cannot use the SQLite session store at {self.location} ({reason}): check that the "
            "path is a writable SQLite database and that no other program holds a lock on it"
        )

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema up to :data:`SCHEMA_VERSION` (one transaction; safe to race)."""
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"the database has schema version {current}, newer than this Scratchy "
                    f"understands ({SCHEMA_VERSION}); upgrade Scratchy"
                )
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            for version, name, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (version, name, _db.iso(utcnow())),
                )
                db.execute(f"PRAGMA user_version={version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its start."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            yield db
        except BaseException as exc:
            db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):  # disk full, I/O error...
                raise self._unavailable(exc) from exc
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._unavailable(exc) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        db = self._conn()
        try:
            db.execute("BEGIN")
            yield db
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            if db.in_transaction:
                db.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened (it reconnects if used again)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._local = threading.local()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def _info(self, row: tuple[Any, ...]) -> SessionInfo:
        sid, created, updated, count, title, size, version, meta = row
        return SessionInfo(
            id=sid,
            created_at=_db.from_iso(created),
            updated_at=_db.from_iso(updated),
            message_count=count,
            title=title,
            size=size,
            version=str(version),
            metadata=_db.load_json_object(meta),
        )

    def _header(self, db: sqlite3.Connection, session_id: str) -> tuple[int, SessionInfo] | None:
        row = db.execute(
            f"SELECT pk, {_HEADER} FROM sessions WHERE id=? AND deleted_at IS NULL", (session_id,)
        ).fetchone()
        return None if row is None else (row[0], self._info(row[1:]))

    def _messages(self, db: sqlite3.Connection, pk: int) -> list[str]:
        rows = db.execute("SELECT data FROM messages WHERE session_pk=? ORDER BY idx", (pk,))
        return [r[0] for r in rows]

    def load(self, session_id: str) -> StoredSession | None:
        """The session, or None when it does not exist."""
        validate_session_id(session_id)
        with self._read() as db:
            found = self._header(db, session_id)
            if found is None:
                return None
            pk, info = found
            rows = self._messages(db, pk)
        messages = _db.decode_all(rows, f"{self.location}, session '{session_id}'")
        self._seen.set(session_id, info.version)
        return StoredSession(info, messages)

    def info(self, session_id: str) -> SessionInfo | None:
        """The session's header, or None when it does not exist."""
        validate_session_id(session_id)
        with self._read() as db:
            found = self._header(db, session_id)
        return None if found is None else found[1]

    def exists(self, session_id: str) -> bool:
        """True when the session exists."""
        validate_session_id(session_id)
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM sessions WHERE id=? AND deleted_at IS NULL", (session_id,)
            ).fetchone()
        return row is not None

    def list(self) -> list[SessionInfo]:
        """Every session's header, newest activity first."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_HEADER} FROM sessions WHERE deleted_at IS NULL "
                "ORDER BY updated_at DESC, version DESC"
            ).fetchall()
        return [self._info(r) for r in rows]

    # -- writing -------------------------------------------------------------------------------

    def _next_version(self, db: sqlite3.Connection) -> int:
        return db.execute(
            "UPDATE counters SET value=value+1 WHERE name='version' RETURNING value"
        ).fetchone()[0]

    def _insert(
        self, db: sqlite3.Connection, pk: int, start: int, messages: list[Message]
    ) -> tuple[int, list[str]]:
        encoded = [_db.encode(m) for m in messages]
        db.executemany(
            "INSERT INTO messages (session_pk, idx, role, data, text) VALUES (?, ?, ?, ?, ?)",
            (
                (pk, start + i, m["role"], data, _db.search_text(m))
                for i, (m, data) in enumerate(zip(messages, encoded, strict=True))
            ),
        )
        return sum(len(d.encode("utf-8")) for d in encoded), encoded

    def _create(self, db: sqlite3.Connection, session_id: str, created: str) -> int:
        cur = db.execute(
            "INSERT INTO sessions (id, created_at, updated_at, version) VALUES (?, ?, ?, 0)",
            (session_id, created, created),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _finish(
        self,
        db: sqlite3.Connection,
        session_id: str,
        pk: int,
        sets: dict[str, Any],
    ) -> SessionInfo:
        sets["version"] = self._next_version(db)
        sets["updated_at"] = _db.iso(utcnow())
        assignments = ", ".join(f"{k}=?" for k in sets)
        row = db.execute(
            f"UPDATE sessions SET {assignments} WHERE pk=? RETURNING {_HEADER}",
            (*sets.values(), pk),
        ).fetchone()
        info = self._info(row)
        self._seen.set(session_id, info.version)
        return info

    def append(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Add ``messages`` at the end in one transaction (creates the session)."""
        validate_session_id(session_id)
        new = validate_messages(messages)
        meta = None if metadata is None else json.dumps(metadata)
        with self._write() as db:
            found = self._header(db, session_id)
            count = (found[1].message_count or 0) if found else 0
            if expected_count is not None and count != expected_count:
                raise _db.count_conflict(session_id, expected_count, count)
            pk = found[0] if found else self._create(db, session_id, _db.iso(utcnow()))
            size, _ = self._insert(db, pk, count, new)
            sets: dict[str, Any] = {"message_count": count + len(new)}
            sets["size"] = (found[1].size if found else 0) + size
            if not (found and found[1].title):
                sets["title"] = make_title(new)
            if meta is not None:
                sets["metadata"] = meta
            return self._finish(db, session_id, pk, sets)

    def replace(
        self,
        session_id: str,
        messages: list[Message],
        *,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
        created_at: Any = None,
    ) -> SessionInfo:
        """Rewrite the session; raises ``SessionConflictError`` rather than lose newer data.

        Only the messages after the first difference are rewritten. ``created_at`` (a datetime)
        overrides the creation time, for copies between stores.
        """
        validate_session_id(session_id)
        new = validate_messages(messages)
        created = _db.to_utc(created_at)
        with self._write() as db:
            found = self._header(db, session_id)
            stored: list[str] = []
            if found is not None:
                pk, info = found
                stored = self._messages(db, pk)
                seen = self._seen.get(session_id)
                if not force and seen is not None and seen != info.version:
                    where = f"{self.location}, session '{session_id}'"
                    old = _db.decode_all(stored, where)
                    if old != new[: len(old)]:
                        raise _db.replace_conflict(session_id, len(new), len(old))
            else:
                pk = self._create(db, session_id, _db.iso(created or utcnow()))
            encoded = [_db.encode(m) for m in new]
            keep = _db.first_difference(stored, encoded)
            if keep < len(stored):
                db.execute("DELETE FROM messages WHERE session_pk=? AND idx>=?", (pk, keep))
            self._insert(db, pk, keep, new[keep:])
            sets: dict[str, Any] = {
                "message_count": len(new),
                "size": sum(len(d.encode("utf-8")) for d in encoded),
                "title": _db.replace_title(found[1].title if found else "", new),
            }
            if metadata is not None:
                sets["metadata"] = json.dumps(metadata)
            if created is not None:
                sets["created_at"] = _db.iso(created)
            return self._finish(db, session_id, pk, sets)

    # -- trash -----------------------------------------------------------------------------------

    def delete(self, session_id: str) -> bool:
        """Move the session to the trash; False when it did not exist."""
        validate_session_id(session_id)
        with self._write() as db:
            cur = db.execute(
                "UPDATE sessions SET deleted_at=? WHERE id=? AND deleted_at IS NULL",
                (_db.iso(utcnow()), session_id),
            )
        self._seen.forget(session_id)
        return cur.rowcount > 0

    def _trash(self, db: sqlite3.Connection, session_id: str | None) -> list[TrashedSession]:
        where = "deleted_at IS NOT NULL" + (" AND id=?" if session_id else "")
        rows = db.execute(
            f"SELECT pk, id, deleted_at, message_count, title FROM sessions WHERE {where} "
            "ORDER BY deleted_at DESC, pk DESC",
            (session_id,) if session_id else (),
        ).fetchall()
        return [
            TrashedSession(sid, _db.from_iso(deleted), count, title, str(pk))
            for pk, sid, deleted, count, title in rows
        ]

    def list_trash(self) -> list[TrashedSession]:
        """Deleted sessions, most recently deleted first."""
        with self._read() as db:
            return self._trash(db, None)

    def restore(self, session_id: str) -> SessionInfo:
        """Bring back the most recently deleted ``session_id``."""
        validate_session_id(session_id)
        with self._write() as db:
            entries = self._trash(db, session_id)
            if not entries:
                raise _db.not_in_trash(session_id)
            if self._header(db, session_id) is not None:
                raise _db.restore_conflict(session_id)
            pk = int(entries[0].key)
            version = self._next_version(db)
            row = db.execute(
                f"UPDATE sessions SET deleted_at=NULL, version=? WHERE pk=? RETURNING {_HEADER}",
                (version, pk),
            ).fetchone()
        info = self._info(row)
        self._seen.set(session_id, info.version)
        return info

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Delete trashed sessions for good (one id's, older ones, or all); returns them."""
        if session_id is not None:
            validate_session_id(session_id)
        cutoff = utcnow() - older_than if older_than is not None else None
        with self._write() as db:
            entries = [
                t for t in self._trash(db, session_id) if cutoff is None or t.deleted_at <= cutoff
            ]
            keys = [(int(t.key),) for t in entries]
            db.executemany("DELETE FROM messages WHERE session_pk=?", keys)
            db.executemany("DELETE FROM sessions WHERE pk=?", keys)
        return entries

    # -- search ----------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Messages of live sessions matching every word of ``query`` (prefix match on the
        last), best BM25 score first; snippets mark matches with ``[`` ``]``."""
        words = _db.query_words(query)
        if not words or limit <= 0:
            return []
        quoted = [f'"{w}"' for w in words]
        quoted[-1] += "*"
        with self._read() as db:
            rows = db.execute(
                "SELECT s.id, m.idx, m.role, snippet(messages_fts, 0, '[', ']', '…', 12), "
                "bm25(messages_fts) AS rank FROM messages_fts "
                "JOIN messages m ON m.mid = messages_fts.rowid "
                "JOIN sessions s ON s.pk = m.session_pk "
                "WHERE messages_fts MATCH ? AND s.deleted_at IS NULL "
                "ORDER BY rank, s.id, m.idx LIMIT ?",
                (" ".join(quoted), limit),
            ).fetchall()
        return [SearchHit(sid, idx, role, snip, -score) for sid, idx, role, snip, score in rows]

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
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailableError, UsageError
from ..messages import Message
from . import _db
from .base import (
    BaseStore,
    Header,
    SearchHit,
    SessionInfo,
    StoredSession,
    T,
    TrashedSession,
    Writer,
    file_turn_lock,
    fts5_query,
    search_text,
    utcnow,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]

BUSY_TIMEOUT_MS = 30_000
_HEADER = "id, created_at, updated_at, message_count, title, size, version, metadata"
# The namespace of an id: up to its last "/" ("" without one), as the page index computes it
# (rtrim drops every trailing character that is not a "/").
_NS = "rtrim(id, replace(id, '/', ''))"


def _split_cjk_text(db: sqlite3.Connection) -> None:
    """Migration 3: re-derive the search text of messages with non-ASCII text (CJK split)."""
    rows = [r for r in db.execute("SELECT mid, data, text FROM messages") if not r[2].isascii()]
    db.executemany(
        "UPDATE messages SET text=? WHERE mid=?",
        ((search_text(json.loads(data)), mid) for mid, data, _ in rows),
    )
    db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")


# Each migration is a list of statements run in one transaction, in order. Never edit a released
# migration: add a new one (and a test that upgrades a database written by the previous version).
MIGRATIONS: list[tuple[int, str, list[Any]]] = [
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
    (3, "search text: Chinese/Japanese/Korean characters one by one", [_split_cjk_text]),
    (
        4,
        "keyset paging per owner (index on the id's namespace, updated_at DESC, id DESC)",
        [
            f"CREATE INDEX sessions_page ON sessions({_NS}, updated_at DESC, id DESC) "
            "WHERE deleted_at IS NULL",
            "DROP INDEX IF EXISTS sessions_updated",
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


class SQLiteStore(BaseStore):
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
            _db.retry_busy(lambda: self._prepare(db))
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        self._local.db = db
        with self._lock:
            self._connections.append(db)
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Switch a new connection to WAL and bring the schema up to date."""
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        self._migrate(db)

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
                    if callable(statement):
                        statement(db)
                    else:
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
    def _read_tx(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot (inside a write
        transaction of this thread, that transaction's view)."""
        db = self._conn()
        if db.in_transaction:
            yield db
            return
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

    # -- primitives (see BaseStore) -------------------------------------------------------------

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

    def _header(self, db: sqlite3.Connection, key: str) -> tuple[int, SessionInfo] | None:
        row = db.execute(
            f"SELECT pk, {_HEADER} FROM sessions WHERE id=? AND deleted_at IS NULL", (key,)
        ).fetchone()
        return None if row is None else (row[0], self._info(row[1:]))

    def _messages(self, db: sqlite3.Connection, pk: int, key: str) -> list[Message]:
        rows = [
            r[0]
            for r in db.execute("SELECT data FROM messages WHERE session_pk=? ORDER BY idx", (pk,))
        ]
        return _db.decode_all(rows, f"{self.location}, session '{key}'")

    def _read(self, key: str) -> StoredSession | None:
        with self._read_tx() as db:
            found = self._header(db, key)
            if found is None:
                return None
            pk, info = found
            return StoredSession(info, self._messages(db, pk, key))

    def _read_info(self, key: str) -> SessionInfo | None:
        with self._read_tx() as db:
            found = self._header(db, key)
        return None if found is None else found[1]

    def _exists(self, key: str) -> bool:
        with self._read_tx() as db:
            row = db.execute(
                "SELECT 1 FROM sessions WHERE id=? AND deleted_at IS NULL", (key,)
            ).fetchone()
        return row is not None

    @staticmethod
    def _in_ns(ns: str, column: str = "id") -> tuple[str, tuple[Any, ...]]:
        """SQL restricting ``column`` to the ids of namespace ``ns`` ("" = no "/" in the id)."""
        if not ns:
            return f"instr({column}, '/')=0", ()
        return (
            f"substr({column}, 1, ?)=? AND instr(substr({column}, ?), '/')=0",
            (len(ns), ns, len(ns) + 1),
        )

    def _list(self, ns: str) -> list[SessionInfo]:
        where, args = self._in_ns(ns)
        with self._read_tx() as db:
            rows = db.execute(
                f"SELECT {_HEADER} FROM sessions WHERE deleted_at IS NULL AND {where}", args
            ).fetchall()
        return [self._info(r) for r in rows]

    def _page(self, ns: str, limit: int, after: tuple[datetime, str] | None) -> list[SessionInfo]:
        """One keyset page, served by the ``sessions_page`` index (the owner's namespace, then
        the activity order): it reads the page's rows only."""
        where, args = f"{_NS}=?", (ns,)
        if after is not None:
            where += " AND (updated_at, id) < (?, ?)"
            args = (*args, _db.iso(after[0]), after[1])
        with self._read_tx() as db:
            rows = db.execute(
                f"SELECT {_HEADER} FROM sessions WHERE deleted_at IS NULL AND {where} "
                "ORDER BY updated_at DESC, id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [self._info(r) for r in rows]

    def _transact(self, key: str, fn: Callable[[Writer], T]) -> T:
        with self._write() as db:
            return fn(_SQLiteWriter(self, db, key))

    def _next_version(self, db: sqlite3.Connection) -> int:
        return db.execute(
            "UPDATE counters SET value=value+1 WHERE name='version' RETURNING value"
        ).fetchone()[0]

    def _trash_entries(self, ns: str, key: str | None) -> list[TrashedSession]:
        where, args = ("id=?", (key,)) if key is not None else self._in_ns(ns)
        with self._read_tx() as db:
            rows = db.execute(
                f"SELECT pk, id, deleted_at, message_count, title FROM sessions "
                f"WHERE deleted_at IS NOT NULL AND {where} ORDER BY deleted_at DESC, pk DESC",
                args,
            ).fetchall()
        return [
            TrashedSession(sid, _db.from_iso(deleted), count, title, str(pk))
            for pk, sid, deleted, count, title in rows
        ]

    def _purge(self, entries: list[TrashedSession]) -> None:
        keys = [(int(t.key),) for t in entries]
        with self._write() as db:
            db.executemany("DELETE FROM messages WHERE session_pk=?", keys)
            db.executemany("DELETE FROM sessions WHERE pk=? AND deleted_at IS NOT NULL", keys)

    def _search(self, ns: str, terms: list[list[str]], limit: int) -> list[SearchHit]:
        """BM25 over the FTS5 index of live sessions; snippets mark matches with ``[`` ``]``."""
        where, args = self._in_ns(ns, "s.id")
        with self._read_tx() as db:
            rows = db.execute(
                "SELECT s.id, m.idx, m.role, snippet(messages_fts, 0, '[', ']', '…', 12), "
                "bm25(messages_fts) AS rank FROM messages_fts "
                "JOIN messages m ON m.mid = messages_fts.rowid "
                "JOIN sessions s ON s.pk = m.session_pk "
                f"WHERE messages_fts MATCH ? AND s.deleted_at IS NULL AND {where} "
                "ORDER BY rank, s.id, m.idx LIMIT ?",
                (fts5_query(terms), *args, limit),
            ).fetchall()
        return [SearchHit(sid, idx, role, snip, -score) for sid, idx, role, snip, score in rows]

    def _turn_lock(self, key: str, timeout: float | None, lease: float) -> Any:
        return file_turn_lock(self.path.with_name(self.path.name + ".locks"), key, timeout)


class _SQLiteWriter:
    """One session inside a ``BEGIN IMMEDIATE`` transaction (see ``base.Writer``)."""

    def __init__(self, store: SQLiteStore, db: sqlite3.Connection, key: str) -> None:
        self.store, self.db, self.key = store, db, key
        self.found = store._header(db, key)

    def current(self) -> SessionInfo | None:
        return self.found[1] if self.found else None

    def messages(self) -> list[Message]:
        return self.store._messages(self.db, self.found[0], self.key) if self.found else []

    def _pk(self, header: Header) -> int:
        if self.found is not None:
            return self.found[0]
        cur = self.db.execute(
            "INSERT INTO sessions (id, created_at, updated_at, version) VALUES (?, ?, ?, 0)",
            (self.key, _db.iso(header.created_at), _db.iso(header.updated_at)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _insert(self, pk: int, start: int, messages: list[Message]) -> int:
        encoded = [_db.encode(m) for m in messages]
        self.db.executemany(
            "INSERT INTO messages (session_pk, idx, role, data, text) VALUES (?, ?, ?, ?, ?)",
            (
                (pk, start + i, m["role"], data, search_text(m))
                for i, (m, data) in enumerate(zip(messages, encoded, strict=True))
            ),
        )
        return sum(len(d.encode("utf-8")) for d in encoded)

    def _finish(self, pk: int, header: Header, **sets: Any) -> SessionInfo:
        sets.update(
            title=header.title,
            metadata=json.dumps(header.metadata),
            created_at=_db.iso(header.created_at),
            updated_at=_db.iso(header.updated_at),
            version=self.store._next_version(self.db),
        )
        assignments = ", ".join(f"{k}=?" for k in sets)
        row = self.db.execute(
            f"UPDATE sessions SET {assignments} WHERE pk=? RETURNING {_HEADER}",
            (*sets.values(), pk),
        ).fetchone()
        return self.store._info(row)

    def append(self, new: list[Message], header: Header) -> SessionInfo:
        info = self.current()
        count = (info.message_count or 0) if info else 0
        pk = self._pk(header)
        size = self._insert(pk, count, new) + (info.size if info else 0)
        return self._finish(pk, header, message_count=count + len(new), size=size)

    def rewrite(self, messages: list[Message], header: Header) -> SessionInfo:
        pk = self._pk(header)
        stored = [
            r[0]
            for r in self.db.execute(
                "SELECT data FROM messages WHERE session_pk=? ORDER BY idx", (pk,)
            )
        ]
        encoded = [_db.encode(m) for m in messages]
        keep = _db.first_difference(stored, encoded)  # only what changed is rewritten
        if keep < len(stored):
            self.db.execute("DELETE FROM messages WHERE session_pk=? AND idx>=?", (pk, keep))
        self._insert(pk, keep, messages[keep:])
        size = sum(len(d.encode("utf-8")) for d in encoded)
        return self._finish(pk, header, message_count=len(messages), size=size)

    def set_header(self, header: Header) -> SessionInfo:
        return self._finish(self._pk(header), header)

    def trash(self) -> bool:
        cur = self.db.execute(
            "UPDATE sessions SET deleted_at=? WHERE id=? AND deleted_at IS NULL",
            (_db.iso(utcnow()), self.key),
        )
        return cur.rowcount > 0

    def untrash(self, entry: TrashedSession) -> SessionInfo:
        version = self.store._next_version(self.db)
        row = self.db.execute(
            f"UPDATE sessions SET deleted_at=NULL, version=? WHERE pk=? RETURNING {_HEADER}",
            (version, int(entry.key)),
        ).fetchone()
        return self.store._info(row)

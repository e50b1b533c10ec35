"""Sessions in PostgreSQL: ``postgresql://user:password@host:port/database``.

Query parameters of our own (removed before the URL reaches libpq): ``schema`` (tables go into
this schema, created when missing; default: the server's ``search_path``), ``pool_size`` (most
connections kept, default 4) and ``pool_timeout`` (seconds to wait for a connection, default 10).
Any libpq parameter (``sslmode``, ``connect_timeout``...) can be given too.

Tables (the schema version is kept in ``scratchy_schema_migrations``; see :data:`MIGRATIONS`):

* ``scratchy_sessions``: one row per session (``id``, ``created_at``/``updated_at`` timestamptz,
  ``title``, ``metadata`` JSON, ``message_count``, ``size``, ``version``, ``deleted_at``). Live
  rows have ``deleted_at`` NULL (one per id, by a partial unique index); the trash is the rows
  where it is set. An owner's sessions (:meth:`~scratchy.stores.base.BaseStore.scoped`) have ids
  ``owner/id``. Pages are read by keyset on an index of ``(namespace, updated_at DESC, id
  DESC)`` (the namespace: the id up to its last "/"), so a page reads its rows only, whoever
  owns the other sessions.
* ``scratchy_messages``: one row per message (``session_pk``, ``idx``, ``role``, ``data`` JSON
  text, ``body`` searchable text), so an append inserts only the new rows. A GIN index on
  ``to_tsvector('simple', body)`` serves search (``ts_rank``, ``ts_headline``).
* ``scratchy_version_seq``: every write stores its next value as the session's ``version``.

The store contract is :class:`~scratchy.stores.base.BaseStore`'s; this module supplies its
primitives. Each write is one transaction that first locks the session row (``SELECT ... FOR
UPDATE``; a transaction-level advisory lock on the id when there is no row yet), so writers of
one session are serialised across processes and machines and usage totals add up. Connections
come from a ``psycopg_pool.ConnectionPool``. A server restart is survived: when an operation
fails on a lost connection, the pool's broken connections are dropped and the operation is
retried (up to three times) when that is safe: reads always, writes only when the failure came
before the ``COMMIT`` was sent (nothing was written then). A write whose ``COMMIT`` got no answer
is reported as :class:`~scratchy.errors.StoreUnavailableError` saying it may or may not have been
saved, and is never retried blindly, so an append is never stored twice. After a connection
timeout the pool is replaced by a fresh one, which reaches a server that came back at once.

Turn locks are session-level advisory locks, each held on a connection of its own (outside the
pool, so that the turn's own writes never wait for it); a holder that dies loses its connection
and with it the lock.

Search words are matched as PostgreSQL's ``simple`` configuration splits them (lower-cased, no
stemming, accents kept; Chinese, Japanese and Korean characters one by one); each message's first
200,000 characters are indexed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from ..errors import MissingDependencyError, UsageError
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
    busy,
    not_in_trash,
    restore_conflict,
    search_text,
    utcnow,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore"]

# The pool logs each failed reconnection attempt; the errors raised here say it already.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
BODY_LIMIT = 200_000
RETRIES = 3
_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_HEADER = "id, created_at, updated_at, message_count, title, size, version, metadata"
_HEADLINE = (
    'StartSel="[", StopSel="]", MaxWords=20, MinWords=6, ShortWord=0, MaxFragments=1, '
    'FragmentDelimiter=" … "'
)
# Ids are ordered by code point (as Python orders them), whatever the database's collation.
_BY_ID = 'id COLLATE "C"'
# The namespace of an id: up to its last "/" ("" without one); the page index leads with it.
_NS = "coalesce(substring(id from '^(.*/)'), '')"


def _split_cjk_bodies(conn: Any) -> None:
    """Migration 4: recompute the search body of messages whose body is not ASCII, so that
    Chinese, Japanese and Korean characters are indexed one by one (``base.search_text``)."""
    with conn.cursor(name="scratchy_cjk_bodies") as rows:  # server-side: any table size
        rows.execute(
            "SELECT session_pk, idx, data FROM scratchy_messages "
            "WHERE octet_length(body) <> char_length(body)"
        )
        while batch := rows.fetchmany(500):
            updates = []
            for pk, idx, data in batch:
                try:
                    message = json.loads(data)
                    body = search_text(message)[:BODY_LIMIT]
                except (ValueError, TypeError, AttributeError):
                    continue  # a corrupted message keeps its body; loading it will say why
                updates.append((body, pk, idx))
            if updates:
                conn.cursor().executemany(
                    "UPDATE scratchy_messages SET body = %s WHERE session_pk = %s AND idx = %s",
                    updates,
                )


# Each migration runs in one transaction, under an advisory lock; a step is an SQL statement or
# a function of the connection. Never edit a released one: add a new one, and a test that
# upgrades a database written by the previous version.
MIGRATIONS: list[tuple[int, str, list[Any]]] = [
    (
        1,
        "sessions and messages",
        [
            "CREATE SEQUENCE scratchy_version_seq",
            """CREATE TABLE scratchy_sessions (
                pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                title text NOT NULL DEFAULT '',
                metadata json NOT NULL DEFAULT '{}',
                message_count integer NOT NULL DEFAULT 0,
                size bigint NOT NULL DEFAULT 0,
                version bigint NOT NULL,
                deleted_at timestamptz
            )""",
            "CREATE UNIQUE INDEX scratchy_sessions_live ON scratchy_sessions (id) "
            "WHERE deleted_at IS NULL",
            "CREATE INDEX scratchy_sessions_updated ON scratchy_sessions "
            "(updated_at DESC, version DESC) WHERE deleted_at IS NULL",
            "CREATE INDEX scratchy_sessions_trash ON scratchy_sessions (deleted_at) "
            "WHERE deleted_at IS NOT NULL",
            """CREATE TABLE scratchy_messages (
                session_pk bigint NOT NULL REFERENCES scratchy_sessions (pk) ON DELETE CASCADE,
                idx integer NOT NULL,
                role text NOT NULL,
                data text NOT NULL,
                body text NOT NULL,
                PRIMARY KEY (session_pk, idx)
            )""",
        ],
    ),
    (
        2,
        "full-text search (GIN index on to_tsvector('simple', body))",
        [
            "CREATE INDEX scratchy_messages_fts ON scratchy_messages "
            "USING gin (to_tsvector('simple', body))",
        ],
    ),
    (
        3,
        "keyset paging (index on updated_at DESC, id DESC)",
        [
            f"CREATE INDEX scratchy_sessions_page ON scratchy_sessions "
            f"(updated_at DESC, {_BY_ID} DESC) WHERE deleted_at IS NULL",
            "DROP INDEX IF EXISTS scratchy_sessions_updated",
        ],
    ),
    (4, "search text: Chinese/Japanese/Korean characters one by one", [_split_cjk_bodies]),
    (
        5,
        "keyset paging per owner (index on the id's namespace, updated_at DESC, id DESC)",
        [
            f"CREATE INDEX scratchy_sessions_owner_page ON scratchy_sessions "
            f"(({_NS}), updated_at DESC, {_BY_ID} DESC) WHERE deleted_at IS NULL",
            "DROP INDEX IF EXISTS scratchy_sessions_page",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _in_ns(ns: str, column: str = "id") -> tuple[str, tuple[Any, ...]]:
    """SQL keeping the ids of namespace ``ns``: they start with ``ns`` and have no "/" after
    it (so ``""`` is the ids without any "/")."""
    return (
        f"left({column}, %s) = %s AND strpos(substr({column}, %s), '/') = 0",
        (len(ns), ns, len(ns) + 1),
    )


def _lexeme(word: str) -> str:
    """``word`` as a quoted tsquery operand (whatever it holds, it stays one operand)."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(terms: list[list[str]]) -> str:
    """A ``to_tsquery`` text: every term (its words in sequence, ``<->``) must match; the last
    term, when a single word, matches as a prefix (``:*``)."""
    parts = []
    for i, phrase in enumerate(terms):
        text = " <-> ".join(_lexeme(w) for w in phrase)
        if i == len(terms) - 1 and len(phrase) == 1:
            text += ":*"
        parts.append(f"({text})")
    return " & ".join(parts)


class PostgresStore(BaseStore):
    """Sessions in PostgreSQL. Thread-safe (a connection pool); safe across processes.

    Args:
        url: ``postgresql://user:password@host:port/db[?schema=name&pool_size=4]``.
    """

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            from psycopg_pool import PoolTimeout
        except ImportError:
            raise MissingDependencyError(
                "psycopg", "postgres", "The PostgreSQL session store"
            ) from None
        self._psycopg = psycopg
        self.location = _db.mask_url(url)
        conninfo, ours = _db.pop_params(url, ("schema", "pool_size", "pool_timeout"))
        if conninfo.startswith("postgres://"):
            conninfo = "postgresql://" + conninfo[len("postgres://") :]
        try:
            size = int(ours.get("pool_size", "4"))
            self._timeout = float(ours.get("pool_timeout", "10"))
        except ValueError:
            raise UsageError(
                f"Bad PostgreSQL URL {self.location}: pool_size and pool_timeout are numbers"
            ) from None
        self.schema = ours.get("schema")
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo:
            kwargs["connect_timeout"] = 5
        if self.schema is not None:
            if not _SCHEMA_RE.fullmatch(self.schema):
                raise UsageError(
                    f"Bad schema name {self.schema!r} in {self.location}: use letters, digits "
                    "and '_'"
                )
            kwargs["options"] = f"-c search_path={self.schema}"
        self._errors = (psycopg.OperationalError, PoolTimeout)
        self._pool_timeout_error = PoolTimeout
        self._conninfo, self._kwargs, self._size = conninfo, kwargs, max(1, size)
        self._pool_lock = threading.Lock()
        self._local = threading.local()  # .conn: the connection of this thread's write, if any
        self._stale = False
        self._connect().close()  # a wrong password or database fails fast and clearly
        self._pool = self._new_pool()
        self._lock_conns: list[Any] = []  # idle connections kept for turn locks
        self._lock_conns_pid = os.getpid()
        try:
            self._pool.open(wait=True, timeout=self._timeout)
            self._tx(self._migrate, write=True)
        except PoolTimeout as exc:
            self._pool.close()
            raise self._unavailable(exc) from exc
        except BaseException:
            self._pool.close()
            raise

    # -- plumbing --------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException, extra: str = "") -> Exception:
        return _db.unavailable("PostgreSQL", self.location, exc, extra)

    def _connect(self) -> Any:
        """A connection of its own, outside the pool."""
        try:
            return self._psycopg.connect(self._conninfo, **self._kwargs)
        except self._psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    def _new_pool(self) -> Any:
        from psycopg_pool import ConnectionPool

        return ConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=1,
            max_size=self._size,
            open=False,
            timeout=self._timeout,
            name="scratchy",
        )

    def _get_pool(self) -> Any:
        """The pool; a fresh one after a connection timeout, so that a server that came back
        is reached at once (the old pool's reconnection attempts back off up to minutes)."""
        with self._pool_lock:
            if self._stale:
                old, self._pool = self._pool, self._new_pool()
                self._pool.open(wait=False)
                self._stale = False
                old.close(timeout=0)
            return self._pool

    def _tx(self, fn: Callable[[Any], T], *, write: bool) -> T:
        """Run ``fn(connection)`` (in a transaction when ``write``); retried on a lost connection
        while that is safe (reads, and writes whose ``COMMIT`` was not sent). A read made inside
        this thread's write runs on the write's connection, in its transaction."""
        inner = getattr(self._local, "conn", None)
        if inner is not None and not write:
            return fn(inner)
        for attempt in range(RETRIES + 1):
            committing = False
            pool = self._get_pool()
            try:
                with pool.connection(timeout=self._timeout) as conn:
                    if not write:
                        return fn(conn)
                    with conn.transaction():
                        result = fn(conn)
                        committing = True
                    return result
            except self._errors as exc:
                if isinstance(exc, self._pool_timeout_error):
                    self._stale = True
                elif not committing and attempt < RETRIES:
                    # Nothing was written. A restarted server leaves every pooled connection
                    # broken: drop those, then try again on a new one.
                    with contextlib.suppress(Exception):
                        pool.check()
                    continue
                extra = (
                    "; the write may or may not have been saved: load the session to check"
                    if committing
                    else ""
                )
                raise self._unavailable(exc, extra) from exc
        raise AssertionError("unreachable")

    def _migrate(self, conn: Any) -> None:
        """Bring the schema up to :data:`SCHEMA_VERSION` (under an advisory lock)."""
        if conn.execute("SELECT to_regclass('scratchy_schema_migrations')").fetchone()[0]:
            done = conn.execute("SELECT max(version) FROM scratchy_schema_migrations").fetchone()
            if done[0] == SCHEMA_VERSION:
                return  # up to date: needs no CREATE privilege
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('scratchy schema migration'))")
        if self.schema is not None:
            from psycopg import sql

            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS scratchy_schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = conn.execute(
            "SELECT coalesce(max(version), 0) FROM scratchy_schema_migrations"
        ).fetchone()[0]
        if current > SCHEMA_VERSION:
            raise UsageError(
                f"The PostgreSQL session store at {self.location} has schema version {current}, "
                f"newer than this Scratchy understands ({SCHEMA_VERSION}): upgrade Scratchy"
            )
        for version, name, steps in MIGRATIONS:
            if version > current:
                for step in steps:
                    if callable(step):
                        step(conn)
                    else:
                        conn.execute(step)
                conn.execute(
                    "INSERT INTO scratchy_schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )

    def close(self) -> None:
        """Close the connection pool (a fresh one is opened if the store is used again)."""
        with self._pool_lock:
            self._pool.close()
            self._stale = True
            idle, self._lock_conns = self._lock_conns, []
        for conn in idle:
            with contextlib.suppress(self._psycopg.Error):
                conn.close()

    # -- rows ------------------------------------------------------------------------------------

    @staticmethod
    def _info(row: tuple[Any, ...]) -> SessionInfo:
        sid, created, updated, count, title, size, version, meta = row
        return SessionInfo(
            id=sid,
            created_at=_db.to_utc(created) or created,
            updated_at=_db.to_utc(updated) or updated,
            message_count=count,
            title=title,
            size=size,
            version=str(version),
            metadata=meta if isinstance(meta, dict) else _db.load_json_object(meta),
        )

    def _where(self, key: str) -> str:
        return f"{self.location}, session '{key}'"

    @staticmethod
    def _stored_data(conn: Any, pk: int) -> list[str]:
        rows = conn.execute(
            "SELECT data FROM scratchy_messages WHERE session_pk = %s ORDER BY idx", (pk,)
        )
        return [r[0] for r in rows]

    def _locked(self, conn: Any, key: str) -> tuple[int, SessionInfo] | None:
        """The live row of ``key``, locked for this transaction; when there is none, the id is
        locked instead (an advisory lock), so that two writers never both create it."""
        select = (
            f"SELECT pk, {_HEADER} FROM scratchy_sessions "
            "WHERE id = %s AND deleted_at IS NULL FOR UPDATE"
        )
        row = conn.execute(select, (key,)).fetchone()
        if row is None:
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"scratchy write {self.schema or ''}:{key}",),
            )
            row = conn.execute(select, (key,)).fetchone()  # created while we waited?
        return None if row is None else (row[0], self._info(row[1:]))

    # -- primitives (see BaseStore) --------------------------------------------------------------

    def _read(self, key: str) -> StoredSession | None:
        def read(conn: Any) -> StoredSession | None:
            row = conn.execute(
                f"SELECT {_HEADER}, pk, (SELECT string_agg(data, ',' ORDER BY idx) "
                "FROM scratchy_messages WHERE session_pk = s.pk) "
                "FROM scratchy_sessions s WHERE id = %s AND deleted_at IS NULL",
                (key,),
            ).fetchone()
            if row is None:
                return None
            info = self._info(row[:8])
            try:  # one parse of the whole list; on failure, find and name the bad message
                messages = json.loads("[" + (row[9] or "") + "]")
                if len(messages) != info.message_count:
                    raise ValueError("count")
                _db.check_messages(messages, self._where(key))
            except ValueError:
                messages = _db.decode_all(self._stored_data(conn, row[8]), self._where(key))
            return StoredSession(info, messages)

        return self._tx(read, write=False)

    def _read_info(self, key: str) -> SessionInfo | None:
        row = self._tx(
            lambda c: c.execute(
                f"SELECT {_HEADER} FROM scratchy_sessions WHERE id = %s AND deleted_at IS NULL",
                (key,),
            ).fetchone(),
            write=False,
        )
        return None if row is None else self._info(row)

    def _exists(self, key: str) -> bool:
        row = self._tx(
            lambda c: c.execute(
                "SELECT 1 FROM scratchy_sessions WHERE id = %s AND deleted_at IS NULL", (key,)
            ).fetchone(),
            write=False,
        )
        return row is not None

    def _list(self, ns: str) -> list[SessionInfo]:
        rows = self._tx(
            lambda c: c.execute(
                f"SELECT {_HEADER} FROM scratchy_sessions WHERE deleted_at IS NULL AND {_NS} = %s",
                (ns,),
            ).fetchall(),
            write=False,
        )
        return [self._info(r) for r in rows]

    def _page(self, ns: str, limit: int, after: tuple[datetime, str] | None) -> list[SessionInfo]:
        """One keyset page, served by the ``scratchy_sessions_owner_page`` index (the owner's
        namespace, then the activity order): it reads the page's rows only."""
        where, args = f"{_NS} = %s", (ns,)
        if after is not None:
            where += f" AND (updated_at, {_BY_ID}) < (%s, %s)"
            args = (*args, after[0], after[1])
        rows = self._tx(
            lambda c: c.execute(
                f"SELECT {_HEADER} FROM scratchy_sessions WHERE deleted_at IS NULL AND {where} "
                f"ORDER BY updated_at DESC, {_BY_ID} DESC LIMIT %s",
                (*args, limit),
            ).fetchall(),
            write=False,
        )
        return [self._info(r) for r in rows]

    def _transact(self, key: str, fn: Callable[[Writer], T]) -> T:
        def run(conn: Any) -> T:
            self._local.conn = conn
            try:
                return fn(_PostgresWriter(self, conn, key))
            finally:
                self._local.conn = None

        return self._tx(run, write=True)

    def _trash_entries(self, ns: str, key: str | None) -> list[TrashedSession]:
        where, args = ("id = %s", (key,)) if key is not None else _in_ns(ns)
        rows = self._tx(
            lambda c: c.execute(
                "SELECT pk, id, deleted_at, message_count, title FROM scratchy_sessions "
                f"WHERE deleted_at IS NOT NULL AND {where} ORDER BY deleted_at DESC, pk DESC",
                args,
            ).fetchall(),
            write=False,
        )
        return [
            TrashedSession(sid, _db.to_utc(deleted) or deleted, count, title, str(pk))
            for pk, sid, deleted, count, title in rows
        ]

    def _purge(self, entries: list[TrashedSession]) -> None:
        if not entries:
            return
        self._tx(
            lambda c: c.execute(
                "DELETE FROM scratchy_sessions WHERE pk = ANY(%s) AND deleted_at IS NOT NULL",
                ([int(e.key) for e in entries],),
            ),
            write=True,
        )

    def _search(self, ns: str, terms: list[list[str]], limit: int) -> list[SearchHit]:
        """Messages of live sessions matching every term, best ``ts_rank`` first; snippets from
        ``ts_headline`` mark matches with ``[ ]``."""
        where, args = _in_ns(ns, "s.id")
        rows = self._tx(
            lambda c: c.execute(
                "WITH q AS (SELECT to_tsquery('simple', %s) AS q), "
                "hits AS (SELECT s.id, m.idx, m.role, m.body, "
                "ts_rank(to_tsvector('simple', m.body), q.q) AS rank "
                "FROM q, scratchy_messages m JOIN scratchy_sessions s ON s.pk = m.session_pk "
                "WHERE to_tsvector('simple', m.body) @@ q.q AND s.deleted_at IS NULL "
                f"AND {where} "
                "ORDER BY rank DESC, s.id, m.idx LIMIT %s) "
                "SELECT id, idx, role, ts_headline('simple', body, q.q, %s), rank "
                "FROM hits, q ORDER BY rank DESC, id, idx",
                (tsquery(terms), *args, limit, _HEADLINE),
            ).fetchall(),
            write=False,
        )
        return [
            SearchHit(sid, idx, role, " ".join(snip.split()), float(rank))
            for sid, idx, role, snip, rank in rows
        ]

    @contextlib.contextmanager
    def _turn_lock(self, key: str, timeout: float | None, lease: float) -> Iterator[None]:
        """A session-level advisory lock on a connection of its own, held for the turn (not a
        pooled one: the turn's writes must not wait for the pool, and closing the connection
        drops the lock whatever happened). The lock key names the schema too: sessions of
        two schemas never block each other."""
        name = f"scratchy turn {self.schema or ''}:{key}"
        conn = self._lock_connection()
        clean = False
        try:
            self._acquire(conn, name, key, timeout)
            try:
                yield
            finally:
                with contextlib.suppress(self._psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock_all()")
                    clean = True
        except BaseException:
            with contextlib.suppress(self._psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock_all()")
                clean = True
            raise
        finally:
            self._return_lock_connection(conn, clean)

    def _lock_connection(self) -> Any:
        """An idle lock connection of this process, else a new one (connecting costs ~10 ms,
        a turn would pay it every time)."""
        with self._pool_lock:
            if self._lock_conns_pid != os.getpid():  # forked: never share the parent's
                self._lock_conns, self._lock_conns_pid = [], os.getpid()
            while self._lock_conns:
                conn = self._lock_conns.pop()
                if not conn.closed:
                    return conn
        conn = self._connect()
        return conn

    def _return_lock_connection(self, conn: Any, clean: bool) -> None:
        """Keep a connection that holds no lock (a few of them); close any other."""
        if clean and not conn.closed and not conn.info.transaction_status:
            with self._pool_lock:
                if len(self._lock_conns) < 8 and self._lock_conns_pid == os.getpid():
                    self._lock_conns.append(conn)
                    return
        with contextlib.suppress(self._psycopg.Error):
            conn.close()

    def _acquire(self, conn: Any, name: str, key: str, timeout: float | None) -> None:
        """Take the lock, waiting in the server (``lock_timeout``) up to ``timeout`` seconds."""
        try:
            if timeout is not None and timeout <= 0:
                got = conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
                ).fetchone()[0]
            else:  # waiters queue in the server, and get the lock the moment it is released
                wait_ms = 0 if timeout is None else max(1, round(timeout * 1000))
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (str(wait_ms),))
                conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
                got = True
        except self._psycopg.errors.LockNotAvailable:
            got = False
        except self._psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        if not got:
            raise busy(key)


class _PostgresWriter:
    """One session inside a write transaction, its row locked (see ``base.Writer``)."""

    def __init__(self, store: PostgresStore, conn: Any, key: str) -> None:
        self.store, self.conn, self.key = store, conn, key
        self.found = store._locked(conn, key)

    def current(self) -> SessionInfo | None:
        return self.found[1] if self.found else None

    def messages(self) -> list[Message]:
        if self.found is None:
            return []
        return _db.decode_all(
            self.store._stored_data(self.conn, self.found[0]), self.store._where(self.key)
        )

    def _pk(self, header: Header) -> int:
        if self.found is not None:
            return self.found[0]
        return self.conn.execute(
            "INSERT INTO scratchy_sessions (id, created_at, updated_at, version) "
            "VALUES (%s, %s, %s, 0) RETURNING pk",
            (self.key, _db.to_utc(header.created_at), _db.to_utc(header.updated_at)),
        ).fetchone()[0]

    def _insert(
        self, pk: int, start: int, messages: list[Message], encoded: list[str] | None = None
    ) -> int:
        """Insert ``messages`` (``encoded``: as ``_db.encode`` gives them) at ``start``; returns
        their encoded size in bytes."""
        if encoded is None:
            encoded = [_db.encode(m) for m in messages]
        rows = [
            (pk, start + i, m["role"], data, search_text(m)[:BODY_LIMIT])
            for i, (m, data) in enumerate(zip(messages, encoded, strict=True))
        ]
        if len(rows) > 16:
            with self.conn.cursor().copy(
                "COPY scratchy_messages (session_pk, idx, role, data, body) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row(r)
        elif rows:  # one statement (executemany costs a pipeline's set-up, even for one row)
            self.conn.execute(
                "INSERT INTO scratchy_messages (session_pk, idx, role, data, body) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows)),
                [value for row in rows for value in row],
            )
        return sum(len(d.encode("utf-8")) for d in encoded)

    def _store(self, pk: int, header: Header, **counts: int) -> SessionInfo:
        """Write ``header`` (and the new counts) with the next version."""
        values: dict[str, Any] = {
            "title": header.title.replace("\x00", ""),  # text cannot hold NUL
            "metadata": json.dumps(header.metadata),
            "created_at": _db.to_utc(header.created_at),
            "updated_at": _db.to_utc(header.updated_at),
            **counts,
        }
        assignments = ", ".join(
            f"{k} = %s::json" if k == "metadata" else f"{k} = %s" for k in values
        )
        row = self.conn.execute(
            f"UPDATE scratchy_sessions SET {assignments}, version = nextval('scratchy_version_seq')"
            f" WHERE pk = %s RETURNING {_HEADER}",
            (*values.values(), pk),
        ).fetchone()
        return self.store._info(row)

    def append(self, new: list[Message], header: Header) -> SessionInfo:
        info = self.current()
        count, size = (info.message_count or 0, info.size) if info else (0, 0)
        pk = self._pk(header)
        size += self._insert(pk, count, new)
        return self._store(pk, header, message_count=count + len(new), size=size)

    def rewrite(self, messages: list[Message], header: Header) -> SessionInfo:
        pk = self._pk(header)
        stored = self.store._stored_data(self.conn, pk) if self.found else []
        encoded = [_db.encode(m) for m in messages]
        keep = _db.first_difference(stored, encoded)
        if keep < len(stored):  # only what changed is rewritten
            self.conn.execute(
                "DELETE FROM scratchy_messages WHERE session_pk = %s AND idx >= %s", (pk, keep)
            )
        size = sum(len(d.encode("utf-8")) for d in stored[:keep])
        size += self._insert(pk, keep, messages[keep:], encoded[keep:])
        return self._store(pk, header, message_count=len(messages), size=size)

    def set_header(self, header: Header) -> SessionInfo:
        return self._store(self._pk(header), header)

    def trash(self) -> bool:
        if self.found is None:
            return False
        self.conn.execute(
            "UPDATE scratchy_sessions SET deleted_at = %s WHERE pk = %s", (utcnow(), self.found[0])
        )
        return True

    def untrash(self, entry: TrashedSession) -> SessionInfo:
        shown = self.key.rsplit("/", 1)[-1]
        try:
            row = self.conn.execute(
                "UPDATE scratchy_sessions SET deleted_at = NULL, "
                "version = nextval('scratchy_version_seq') "
                f"WHERE pk = %s AND deleted_at IS NOT NULL RETURNING {_HEADER}",
                (int(entry.key),),
            ).fetchone()
        except self.store._psycopg.errors.UniqueViolation:  # a live one from an older writer
            raise restore_conflict(shown) from None
        if row is None:  # purged meanwhile
            raise not_in_trash(shown)
        return self.store._info(row)

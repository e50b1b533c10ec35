"""Sessions in PostgreSQL: ``postgresql://user:password@host:port/database``.

Query parameters of our own (removed before the URL reaches libpq): ``schema`` (tables go into
this schema, created when missing; default: the server's ``search_path``), ``pool_size`` (most
connections kept, default 4) and ``pool_timeout`` (seconds to wait for a connection, default 10).
Any libpq parameter (``sslmode``, ``connect_timeout``...) can be given too.

Tables (the schema version is kept in ``scratchy_schema_migrations``; see :data:`MIGRATIONS`):

* ``scratchy_sessions``: one row per session (``id``, ``created_at``/``updated_at`` timestamptz,
  ``title``, ``metadata`` JSON, ``message_count``, ``size``, ``version``, ``deleted_at``). Live
  rows have ``deleted_at`` NULL (one per id, by a partial unique index); the trash is the rows
  where it is set.
* ``scratchy_messages``: one row per message (``session_pk``, ``idx``, ``role``, ``data`` JSON
  text, ``body`` searchable text), so an append inserts only the new rows. A GIN index on
  ``to_tsvector('simple', body)`` serves search (``ts_rank``, ``ts_headline``).
* ``scratchy_version_seq``: every write stores its next value as the session's ``version``.

Each write is one transaction that first locks the session row (``SELECT ... FOR UPDATE``), so
writers of one session are serialised across processes and machines. Connections come from a
``psycopg_pool.ConnectionPool``. A server restart is survived: when an operation fails on a
lost connection, the pool's broken connections are dropped and the operation is retried (up to
three times) when that is safe: reads always, writes only when the failure came before the
``COMMIT`` was sent (nothing was written then). A write whose ``COMMIT`` got no answer is
reported as :class:`~scratchy.errors.StoreUnavailableError` saying it may or may not have been
saved, and is never retried blindly, so an append is never stored twice. After a connection
timeout the pool is replaced by a fresh one, which reaches a server that came back at once.

Search words are matched as PostgreSQL's ``simple`` configuration splits them (lower-cased, no
stemming, accents kept); each message's first 200,000 characters are indexed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ..errors import MissingDependencyError, UsageError
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

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore"]

T = TypeVar("T")
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

# Each migration runs in one transaction, under an advisory lock. Never edit a released one:
# add a new one, and a test that upgrades a database written by the previous version.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
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
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class PostgresStore:
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
        self._seen = _db.SeenVersions()
        self._conninfo, self._kwargs, self._size = conninfo, kwargs, max(1, size)
        self._pool_lock = threading.Lock()
        self._stale = False
        try:  # one direct connection first: a wrong password or database fails fast and clearly
            psycopg.connect(conninfo, **kwargs).close()
        except psycopg.Error as exc:
            raise _db.unavailable("PostgreSQL", self.location, exc) from exc
        self._pool = self._new_pool()
        try:
            self._pool.open(wait=True, timeout=self._timeout)
            self._tx(self._migrate, write=True)
        except PoolTimeout as exc:
            self._pool.close()
            raise _db.unavailable("PostgreSQL", self.location, exc) from exc
        except BaseException:
            self._pool.close()
            raise

    # -- plumbing --------------------------------------------------------------------------------

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
        while that is safe (reads, and writes whose ``COMMIT`` was not sent)."""
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
                raise _db.unavailable("PostgreSQL", self.location, exc, extra) from exc
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
        for version, name, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO scratchy_schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )

    def close(self) -> None:
        """Close the connection pool."""
        with self._pool_lock:
            self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # -- reading ---------------------------------------------------------------------------------

    def load(self, session_id: str) -> StoredSession | None:
        """The session, or None when it does not exist."""
        validate_session_id(session_id)

        def read(conn: Any) -> tuple[Any, ...] | None:
            return conn.execute(
                f"SELECT {_HEADER}, pk, (SELECT string_agg(data, ',' ORDER BY idx) "
                "FROM scratchy_messages WHERE session_pk = s.pk) "
                "FROM scratchy_sessions s WHERE id = %s AND deleted_at IS NULL",
                (session_id,),
            ).fetchone()

        row = self._tx(read, write=False)
        if row is None:
            return None
        info = self._info(row[:8])
        where = f"{self.location}, session '{session_id}'"
        try:
            messages = json.loads("[" + (row[9] or "") + "]")
            if len(messages) != info.message_count:
                raise ValueError("count")
            _db.check_messages(messages, where)
        except ValueError:  # find and name the bad message
            rows = self._tx(
                lambda c: [
                    r[0]
                    for r in c.execute(
                        "SELECT data FROM scratchy_messages WHERE session_pk = %s ORDER BY idx",
                        (row[8],),
                    )
                ],
                write=False,
            )
            messages = _db.decode_all(rows, where)
        self._seen.set(session_id, info.version)
        return StoredSession(info, messages)

    def info(self, session_id: str) -> SessionInfo | None:
        """The session's header, or None when it does not exist."""
        validate_session_id(session_id)
        row = self._tx(
            lambda c: c.execute(
                f"SELECT {_HEADER} FROM scratchy_sessions WHERE id = %s AND deleted_at IS NULL",
                (session_id,),
            ).fetchone(),
            write=False,
        )
        return None if row is None else self._info(row)

    def exists(self, session_id: str) -> bool:
        """True when the session exists."""
        validate_session_id(session_id)
        row = self._tx(
            lambda c: c.execute(
                "SELECT 1 FROM scratchy_sessions WHERE id = %s AND deleted_at IS NULL",
                (session_id,),
            ).fetchone(),
            write=False,
        )
        return row is not None

    def list(self) -> list[SessionInfo]:
        """Every session's header, newest activity first."""
        rows = self._tx(
            lambda c: c.execute(
                f"SELECT {_HEADER} FROM scratchy_sessions WHERE deleted_at IS NULL "
                "ORDER BY updated_at DESC, version DESC"
            ).fetchall(),
            write=False,
        )
        return [self._info(r) for r in rows]

    # -- writing ---------------------------------------------------------------------------------

    def _lock(self, conn: Any, session_id: str, created: datetime | None) -> tuple[Any, ...]:
        """Lock the live row of ``session_id`` (created when missing): (pk, count, size,
        title, version, is_new)."""
        select = (
            "SELECT pk, message_count, size, title, version, false FROM scratchy_sessions "
            "WHERE id = %s AND deleted_at IS NULL FOR UPDATE"
        )
        row = conn.execute(select, (session_id,)).fetchone()
        if row is None:
            when = created or utcnow()
            row = conn.execute(
                "INSERT INTO scratchy_sessions (id, created_at, updated_at, version) "
                "VALUES (%s, %s, %s, 0) ON CONFLICT (id) WHERE deleted_at IS NULL DO NOTHING "
                "RETURNING pk, message_count, size, title, version, true",
                (session_id, when, when),
            ).fetchone()
            if row is None:  # created by another writer meanwhile
                row = conn.execute(select, (session_id,)).fetchone()
        return row

    @staticmethod
    def _insert(conn: Any, pk: int, start: int, messages: list[Message]) -> list[str]:
        encoded = [_db.encode(m) for m in messages]
        rows = [
            (pk, start + i, m["role"], data, _db.search_text(m)[:BODY_LIMIT])
            for i, (m, data) in enumerate(zip(messages, encoded, strict=True))
        ]
        if len(rows) > 16:
            with conn.cursor().copy(
                "COPY scratchy_messages (session_pk, idx, role, data, body) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row(r)
        elif rows:
            conn.cursor().executemany(
                "INSERT INTO scratchy_messages (session_pk, idx, role, data, body) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        return encoded

    def _finish(self, conn: Any, session_id: str, pk: int, sets: dict[str, Any]) -> SessionInfo:
        sets["updated_at"] = utcnow()
        if "title" in sets:
            sets["title"] = sets["title"].replace("\x00", "")  # text cannot hold NUL
        assignments = ", ".join(f"{k} = %s::json" if k == "metadata" else f"{k} = %s" for k in sets)
        row = conn.execute(
            f"UPDATE scratchy_sessions SET {assignments}, version = nextval('scratchy_version_seq')"
            f" WHERE pk = %s RETURNING {_HEADER}",
            (*sets.values(), pk),
        ).fetchone()
        return self._info(row)

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

        def write(conn: Any) -> SessionInfo:
            pk, count, size, title, _, _ = self._lock(conn, session_id, None)
            if expected_count is not None and count != expected_count:
                raise _db.count_conflict(session_id, expected_count, count)
            encoded = self._insert(conn, pk, count, new)
            sets: dict[str, Any] = {
                "message_count": count + len(new),
                "size": size + sum(len(e.encode("utf-8")) for e in encoded),
            }
            if not title:
                sets["title"] = make_title(new)
            if metadata is not None:
                sets["metadata"] = json.dumps(metadata)
            return self._finish(conn, session_id, pk, sets)

        info = self._tx(write, write=True)
        self._seen.set(session_id, info.version)
        return info

    def replace(
        self,
        session_id: str,
        messages: list[Message],
        *,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> SessionInfo:
        """Rewrite the session; raises ``SessionConflictError`` rather than lose newer data.

        Only the messages after the first difference are rewritten. ``created_at`` overrides the
        creation time, for copies between stores.
        """
        validate_session_id(session_id)
        new = validate_messages(messages)
        created = _db.to_utc(created_at)
        seen = self._seen.get(session_id)

        def write(conn: Any) -> SessionInfo:
            pk, _, _, title, version, is_new = self._lock(conn, session_id, created)
            stored: list[str] = []
            if not is_new:
                stored = [
                    r[0]
                    for r in conn.execute(
                        "SELECT data FROM scratchy_messages WHERE session_pk = %s ORDER BY idx",
                        (pk,),
                    )
                ]
                if not force and seen is not None and seen != str(version):
                    where = f"{self.location}, session '{session_id}'"
                    old = _db.decode_all(stored, where)
                    if old != new[: len(old)]:
                        raise _db.replace_conflict(session_id, len(new), len(old))
            encoded = [_db.encode(m) for m in new]
            keep = _db.first_difference(stored, encoded)
            if keep < len(stored):
                conn.execute(
                    "DELETE FROM scratchy_messages WHERE session_pk = %s AND idx >= %s", (pk, keep)
                )
            self._insert(conn, pk, keep, new[keep:])
            sets: dict[str, Any] = {
                "message_count": len(new),
                "size": sum(len(e.encode("utf-8")) for e in encoded),
                "title": _db.replace_title(title, new),
            }
            if metadata is not None:
                sets["metadata"] = json.dumps(metadata)
            if created is not None:
                sets["created_at"] = created
            return self._finish(conn, session_id, pk, sets)

        info = self._tx(write, write=True)
        self._seen.set(session_id, info.version)
        return info

    # -- trash -----------------------------------------------------------------------------------

    def delete(self, session_id: str) -> bool:
        """Move the session to the trash; False when it did not exist."""
        validate_session_id(session_id)
        count = self._tx(
            lambda c: (
                c.execute(
                    "UPDATE scratchy_sessions SET deleted_at = %s "
                    "WHERE id = %s AND deleted_at IS NULL",
                    (utcnow(), session_id),
                ).rowcount
            ),
            write=True,
        )
        self._seen.forget(session_id)
        return count > 0

    @staticmethod
    def _trashed(rows: list[tuple[Any, ...]]) -> list[TrashedSession]:
        out = [
            TrashedSession(sid, _db.to_utc(deleted) or deleted, count, title, str(pk))
            for pk, sid, deleted, count, title in rows
        ]
        out.sort(key=lambda t: (t.deleted_at, int(t.key)), reverse=True)
        return out

    def list_trash(self) -> list[TrashedSession]:
        """Deleted sessions, most recently deleted first."""
        rows = self._tx(
            lambda c: c.execute(
                "SELECT pk, id, deleted_at, message_count, title FROM scratchy_sessions "
                "WHERE deleted_at IS NOT NULL"
            ).fetchall(),
            write=False,
        )
        return self._trashed(rows)

    def restore(self, session_id: str) -> SessionInfo:
        """Bring back the most recently deleted ``session_id``."""
        validate_session_id(session_id)

        def write(conn: Any) -> SessionInfo:
            row = conn.execute(
                "SELECT pk FROM scratchy_sessions WHERE id = %s AND deleted_at IS NOT NULL "
                "ORDER BY deleted_at DESC, pk DESC LIMIT 1 FOR UPDATE",
                (session_id,),
            ).fetchone()
            if row is None:
                raise _db.not_in_trash(session_id)
            live = conn.execute(
                "SELECT 1 FROM scratchy_sessions WHERE id = %s AND deleted_at IS NULL",
                (session_id,),
            ).fetchone()
            if live is not None:
                raise _db.restore_conflict(session_id)
            return self._info(
                conn.execute(
                    "UPDATE scratchy_sessions SET deleted_at = NULL, "
                    "version = nextval('scratchy_version_seq') WHERE pk = %s "
                    f"RETURNING {_HEADER}",
                    (row[0],),
                ).fetchone()
            )

        try:
            info = self._tx(write, write=True)
        except self._psycopg.errors.UniqueViolation:  # restored or created meanwhile
            raise _db.restore_conflict(session_id) from None
        self._seen.set(session_id, info.version)
        return info

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Delete trashed sessions for good (one id's, older ones, or all); returns them."""
        if session_id is not None:
            validate_session_id(session_id)
        cutoff = utcnow() - older_than if older_than is not None else None
        rows = self._tx(
            lambda c: c.execute(
                "DELETE FROM scratchy_sessions WHERE deleted_at IS NOT NULL "
                "AND (%s::text IS NULL OR id = %s) "
                "AND (%s::timestamptz IS NULL OR deleted_at <= %s) "
                "RETURNING pk, id, deleted_at, message_count, title",
                (session_id, session_id, cutoff, cutoff),
            ).fetchall(),
            write=True,
        )
        return self._trashed(rows)

    # -- search ----------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Messages of live sessions matching every word of ``query`` (prefix match on the
        last), best ``ts_rank`` first; snippets from ``ts_headline`` mark matches with ``[ ]``."""
        words = _db.query_words(query)
        if not words or limit <= 0:
            return []
        tsquery = " & ".join(f"'{w}'" for w in words) + ":*"
        rows = self._tx(
            lambda c: c.execute(
                "WITH q AS (SELECT to_tsquery('simple', %s) AS q), "
                "hits AS (SELECT s.id, m.idx, m.role, m.body, "
                "ts_rank(to_tsvector('simple', m.body), q.q) AS rank "
                "FROM q, scratchy_messages m JOIN scratchy_sessions s ON s.pk = m.session_pk "
                "WHERE to_tsvector('simple', m.body) @@ q.q AND s.deleted_at IS NULL "
                "ORDER BY rank DESC, s.id, m.idx LIMIT %s) "
                "SELECT id, idx, role, ts_headline('simple', body, q.q, %s), rank "
                "FROM hits, q ORDER BY rank DESC, id, idx",
                (tsquery, limit, _HEADLINE),
            ).fetchall(),
            write=False,
        )
        return [
            SearchHit(sid, idx, role, " ".join(snip.split()), float(rank))
            for sid, idx, role, snip, rank in rows
        ]

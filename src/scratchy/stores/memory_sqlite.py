"""Memories in SQLite with an FTS5 index: the file store's ``<dir>/.memory/memories.sqlite``, an
SQLite store's own database file, and (in memory) the Redis backend's local mirror.

Tables: ``memory_entries`` (one row per entry and owner: the entry as JSON, and the text that is
indexed) and ``memory_fts`` (an external-content FTS5 index of that text kept by triggers;
ranking with BM25). Writes run in ``BEGIN IMMEDIATE`` transactions with ``synchronous=FULL`` in
WAL mode: a write that returned survives a crash, and writers of several processes take turns.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailableError
from . import _db
from .base import fold
from .memory_base import (
    Memory,
    MemoryBackend,
    MemoryHit,
    Term,
    body_of,
    fts5_any,
    rarest,
    search_body,
    with_prefix,
)

RANK_AT_MOST = 5_000
"""Matches ranked per query: words more common than that are left out of a query that has
rarer ones; past it, the most recently stored matches are ranked."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_entries (
    rid INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    session_id TEXT,
    data TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (owner, id)
);
CREATE INDEX IF NOT EXISTS memory_by_session ON memory_entries (owner, session_id);
CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
    body, content='memory_entries', content_rowid='rid',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS memory_vocab USING fts5vocab(memory_fts, 'row');
CREATE TRIGGER IF NOT EXISTS memory_fts_insert AFTER INSERT ON memory_entries BEGIN
    INSERT INTO memory_fts(rowid, body) VALUES (new.rid, new.body);
END;
CREATE TRIGGER IF NOT EXISTS memory_fts_delete AFTER DELETE ON memory_entries BEGIN
    INSERT INTO memory_fts(memory_fts, rowid, body) VALUES ('delete', old.rid, old.body);
END;
CREATE TRIGGER IF NOT EXISTS memory_fts_update AFTER UPDATE OF body ON memory_entries BEGIN
    INSERT INTO memory_fts(memory_fts, rowid, body) VALUES ('delete', old.rid, old.body);
    INSERT INTO memory_fts(rowid, body) VALUES (new.rid, new.body);
END;
"""


class SQLiteMemory(MemoryBackend):
    """One owner's memories in an SQLite database (``path`` None: in memory, this process)."""

    def __init__(self, path: str | Path | None, *, owner: str = "") -> None:
        self.path = Path(path) if path is not None else None
        self.location = str(path) if path is not None else ":memory:"
        self.owner = owner
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # -- plumbing ------------------------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        if self.path is not None and not create and not self.path.exists():
            return None  # nothing stored yet: reads find nothing, and create nothing
        try:
            if self.path is not None:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            where = str(self.path) if self.path is not None else ":memory:"
            db = sqlite3.connect(where, check_same_thread=False, timeout=30, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            _db.retry_busy(lambda: self._prepare(db))
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(
                f"Cannot open the memory database {self.location} ({exc}): make its directory "
                "writable or use another session store"
            ) from None
        self._db = db
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        if self.path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        else:
            db.execute("PRAGMA synchronous=OFF")
        if db.in_transaction:  # a failed attempt's transaction
            db.execute("ROLLBACK")
        db.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect(True)
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read(self, fn: Callable[[sqlite3.Connection], Any], empty: Any) -> Any:
        with self._lock:
            db = self._connect(False)
            return empty if db is None else fn(db)

    # -- the backend ---------------------------------------------------------------------------

    def get(self, memory_id: str) -> Memory | None:
        row = self._read(
            lambda db: db.execute(
                "SELECT data FROM memory_entries WHERE owner=? AND id=?", (self.owner, memory_id)
            ).fetchone(),
            None,
        )
        return Memory.from_dict(_loads(row[0])) if row else None

    def insert(self, memory: Memory) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO memory_entries (owner, id, session_id, data, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.owner, memory.id, memory.session_id, memory.to_json(), search_body(memory)),
            )

    def insert_many(self, memories: list[Memory]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO memory_entries (owner, id, session_id, data, body) "
                "VALUES (?, ?, ?, ?, ?)",
                [(self.owner, m.id, m.session_id, m.to_json(), search_body(m)) for m in memories],
            )

    def apply_raw(self, rows: list[tuple[str, str]], deletes: list[str]) -> None:
        """Many entries given as ``(id, JSON text)``, and deletions, in one transaction (the
        Redis mirror: the JSON is stored as it came)."""
        data = []
        for mid, raw in rows:
            d = _loads(raw)
            source = d.get("source") or {}
            body = body_of(str(d.get("text", "")), [str(t) for t in d.get("tags") or []])
            data.append(
                (str(d.get("created_at", "")), (self.owner, mid, source.get("session"), raw, body))
            )
        data.sort(key=lambda row: (row[0], row[1][1]))  # rowids in creation order, as elsewhere
        with self._write() as db:
            db.executemany(
                "INSERT INTO memory_entries (owner, id, session_id, data, body) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, id) DO UPDATE SET "
                "session_id=excluded.session_id, data=excluded.data, body=excluded.body",
                [row for _, row in data],
            )
            db.executemany(
                "DELETE FROM memory_entries WHERE owner=? AND id=?",
                [(self.owner, i) for i in deletes],
            )

    def modify(self, memory_id: str, fn: Callable[[Memory], Memory | None]) -> Memory | None:
        with self._write() as db:
            row = db.execute(
                "SELECT data FROM memory_entries WHERE owner=? AND id=?", (self.owner, memory_id)
            ).fetchone()
            if row is None:
                return None
            new = fn(Memory.from_dict(_loads(row[0])))
            if new is None:
                return Memory.from_dict(_loads(row[0]))
            db.execute(
                "UPDATE memory_entries SET session_id=?, data=?, body=? WHERE owner=? AND id=?",
                (new.session_id, new.to_json(), search_body(new), self.owner, memory_id),
            )
            return new

    def delete(self, ids: list[str]) -> int:
        if not ids or self._read(lambda db: True, False) is False:
            return 0
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "DELETE FROM memory_entries WHERE owner=? AND id=?",
                [(self.owner, i) for i in ids],
            )
            return db.total_changes - before

    def all(self) -> list[Memory]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT data FROM memory_entries WHERE owner=? ORDER BY rid", (self.owner,)
            ).fetchall(),
            [],
        )
        return [Memory.from_dict(_loads(r[0])) for r in rows]

    def count(self) -> int:
        return int(
            self._read(
                lambda db: db.execute(
                    "SELECT count(*) FROM memory_entries WHERE owner=?", (self.owner,)
                ).fetchone()[0],
                0,
            )
        )

    def from_session(self, session_id: str) -> list[str]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT id FROM memory_entries WHERE owner=? AND session_id=? ORDER BY rid",
                (self.owner, session_id),
            ).fetchall(),
            [],
        )
        return [r[0] for r in rows]

    def search(self, terms: list[list[str]], limit: int) -> list[MemoryHit]:
        if not terms or limit <= 0:
            return []

        def run(db: sqlite3.Connection) -> list[Any]:
            match = fts5_any(rarest(with_prefix(terms), lambda t: _matches(db, t), RANK_AT_MOST))
            # Even the rarest word may match more than RANK_AT_MOST memories: then rank only
            # the most recently stored of its matches (as session search does).
            cut = db.execute(
                "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ? "
                "ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                (match, RANK_AT_MOST - 1),
            ).fetchone()
            return db.execute(
                "SELECT e.data, f.rank FROM (SELECT rowid, bm25(memory_fts) AS rank "
                "FROM memory_fts WHERE memory_fts MATCH ? AND rowid >= ?) AS f "
                "JOIN memory_entries e ON e.rid = f.rowid WHERE e.owner = ? "
                "ORDER BY f.rank LIMIT ?",
                (match, cut[0] if cut else 0, self.owner, limit),
            ).fetchall()

        try:
            rows = self._read(run, [])
        except sqlite3.OperationalError:  # a query FTS5 cannot parse: nothing matches
            return []
        return [MemoryHit(Memory.from_dict(_loads(d)), -float(rank)) for d, rank in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _matches(db: sqlite3.Connection, term: Term) -> int:
    """How many memories a term matches at most (from the index's vocabulary: a phrase
    matches no more than its rarest word)."""
    words, prefix = term
    counts = []
    for i, word in enumerate(words):
        w = fold(word)
        if prefix and i == len(words) - 1:
            row = db.execute(
                "SELECT coalesce(sum(doc), 0) FROM memory_vocab WHERE term >= ? AND term < ?",
                (w, w + "\U0010ffff"),
            ).fetchone()
        else:
            row = db.execute("SELECT doc FROM memory_vocab WHERE term = ?", (w,)).fetchone()
        counts.append(int(row[0]) if row else 0)
    return min(counts) if counts else 0


def _loads(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    return value if isinstance(value, dict) else {}

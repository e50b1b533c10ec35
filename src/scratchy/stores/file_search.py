"""Full-text search for the TOON file store: an SQLite FTS5 index beside the session files.

The index (``<dir>/.index/search.sqlite``) is derived data, never the source of truth. Before a
query it is brought up to date: when the session directory's modification time is unchanged
since the last sync (every write of a session renames a file into the directory, which changes
it) and no journal in ``.journal/`` changed (appends to a big session's journal leave the
directory as it is) nothing is read; otherwise each session whose version differs from the
indexed one is re-read, and removed sessions are dropped. A missing or damaged index is rebuilt.

Results are ranked with BM25. A word so common that it matches more than ``RANK_AT_MOST``
messages is ranked among its most recently indexed matches only, which keeps every query fast.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from ..errors import SessionError
from . import _db
from .base import SearchHit, fts5_query, search_text

if TYPE_CHECKING:
    from .toon_files import TOONFileStore

SCHEMA_VERSION = 3  # 3: Chinese/Japanese/Korean characters indexed one by one
RANK_AT_MOST = 10_000
"""Matches ranked per query; beyond that the most recently indexed matches are ranked."""
_ROWS_PER_DOC = 1 << 24  # message rowids of a session: doc * 2**24 + index


class FileSearchIndex:
    """The FTS5 index of one session directory."""

    def __init__(self, store: TOONFileStore) -> None:
        self.store = store
        self.path = store.directory / ".index" / "search.sqlite"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)  # never the session directory
            try:
                db = self._open(str(self.path))
            except sqlite3.DatabaseError:  # damaged: it is only an index, rebuild it
                for suffix in ("", "-wal", "-shm"):
                    self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
                db = self._open(str(self.path))
        except (OSError, sqlite3.OperationalError):  # a read-only directory: index in memory
            db = self._open(":memory:")
        self._db = db
        return db

    def _open(self, where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where, check_same_thread=False, timeout=30)
        _db.retry_busy(lambda: db.execute("PRAGMA journal_mode=WAL"))
        db.execute("PRAGMA synchronous=OFF")  # derived data: rebuilt if lost
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.executescript(
                """
                DROP TABLE IF EXISTS docs;
                DROP TABLE IF EXISTS meta;
                DROP TABLE IF EXISTS msgs;
                CREATE TABLE docs (
                    doc INTEGER PRIMARY KEY AUTOINCREMENT,
                    session_id TEXT UNIQUE NOT NULL,
                    version TEXT NOT NULL
                );
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
                CREATE VIRTUAL TABLE msgs USING fts5(
                    content, session_id UNINDEXED, idx UNINDEXED, role UNINDEXED,
                    tokenize = 'unicode61 remove_diacritics 2'
                );
                """
            )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.commit()
        return db

    def sync(self) -> int:
        """Bring the index up to date; returns how many sessions were (re)indexed."""
        with self._lock:
            db = self._connect()
            try:
                mtime = str(os.stat(self.store.directory).st_mtime_ns)
            except FileNotFoundError:
                return 0
            journals = self.store._journal_stats()  # appends to a journal leave the dir as is
            if journals:
                mtime += ":" + hashlib.blake2b(repr(sorted(journals.items())).encode()).hexdigest()
            row = db.execute("SELECT value FROM meta WHERE key='dir_mtime'").fetchone()
            if row is not None and row[0] == mtime:
                return 0
            if db.in_transaction:
                db.commit()
            db.execute("BEGIN IMMEDIATE")  # one process at a time brings the index up to date
            try:
                count = self._sync(db, mtime)
            except BaseException:
                db.rollback()
                raise
            db.commit()
            return count

    def _sync(self, db: sqlite3.Connection, mtime: str) -> int:
        """Index what changed, inside the caller's write transaction."""
        indexed = dict(db.execute("SELECT session_id, version FROM docs"))
        live = {i.id: i.version for i in self.store._list("") if i.error is None}
        changed = [sid for sid, version in live.items() if indexed.get(sid) != version]
        gone = [sid for sid in indexed if sid not in live]
        for sid in gone:
            self._drop(db, sid)
        count = 0
        for sid in changed:
            try:
                stored = self.store.load(sid)
            except SessionError:
                continue
            if sid in indexed:
                self._drop(db, sid)
            if stored is None:
                continue
            doc = db.execute(
                "INSERT INTO docs (session_id, version) VALUES (?, ?)",
                (sid, stored.info.version),
            ).lastrowid
            base = int(doc or 0) * _ROWS_PER_DOC
            db.executemany(
                "INSERT INTO msgs (rowid, content, session_id, idx, role) VALUES (?, ?, ?, ?, ?)",
                (
                    (base + i, search_text(m), sid, i, m.get("role", ""))
                    for i, m in enumerate(stored.messages[: _ROWS_PER_DOC - 1])
                ),
            )
            count += 1
        # Trust an unchanged directory time next time only when it is not within the
        # file system's timestamp granularity of now (two writes in one tick look alike).
        settled = time.time_ns() - int(mtime.split(":")[0]) > 100_000_000
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('dir_mtime', ?)", (mtime if settled else "",)
        )
        return count

    @staticmethod
    def _drop(db: sqlite3.Connection, session_id: str) -> None:
        row = db.execute("SELECT doc FROM docs WHERE session_id=?", (session_id,)).fetchone()
        if row is not None:
            base = row[0] * _ROWS_PER_DOC
            db.execute(
                "DELETE FROM msgs WHERE rowid >= ? AND rowid < ?", (base, base + _ROWS_PER_DOC)
            )
            db.execute("DELETE FROM docs WHERE doc=?", (row[0],))

    def search(self, terms: list[list[str]], *, limit: int = 20) -> list[SearchHit]:
        """Messages matching every term, best first (BM25)."""
        match = fts5_query(terms)
        if not match or limit <= 0:
            return []
        self.sync()
        with self._lock:
            db = self._connect()
            # Ranking every match of a very common word costs ~1 µs a match: past
            # RANK_AT_MOST matches, rank only the most recently indexed ones.
            cut = db.execute(
                "SELECT rowid FROM msgs WHERE msgs MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                (match, RANK_AT_MOST - 1),
            ).fetchone()
            rows = db.execute(
                "SELECT session_id, idx, role, snippet(msgs, 0, '[', ']', '…', 12), bm25(msgs)"
                " FROM msgs WHERE msgs MATCH ? AND rowid >= ? ORDER BY bm25(msgs) LIMIT ?",
                (match, cut[0] if cut else 0, limit),
            ).fetchall()
        return [
            SearchHit(sid, int(idx), role, snip, -score) for sid, idx, role, snip, score in rows
        ]

    def close(self) -> None:
        """Close the index database."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

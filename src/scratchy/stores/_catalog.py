"""The listing catalog of a TOON session directory: ``<dir>/.index/catalog.sqlite``.

One row per session (its header as listings show it, the ``stat`` of its file and journal, and
its last activity as a sort key), so that the first page of the newest sessions costs the page,
not the directory. The catalog is derived data: the files stay the truth, and the catalog is
only trusted while that can be checked cheaply.

* **Writers keep it current.** Every write of a session, inside the session's lock, first marks
  the session *pending* (an empty file ``.index/pending/<id>``: no SQLite commit, no data), then
  writes the file or journal, then stores the new row (one commit) and removes the mark. A
  writer killed in between leaves the mark: readers read that session from its files (and
  repair the row once nobody holds the session's lock).
* **Readers check it.** A page is served from the catalog when the directory's modification
  time equals the one recorded when the catalog last matched the directory's file names, and
  that record was made at least :data:`SETTLE_NS` after that time (two changes within one tick of
  the file system's clock look alike). Otherwise the names are reconciled first: files added
  behind the catalog's back (a copied ``.toon`` file) are read and added, rows of files removed
  behind its back are dropped. Each row of a page is then checked against its file's and
  journal's ``stat`` (a mismatch is re-read), and pending sessions are read from their files.
* A full listing stats every file (as before) and repairs every row that does not match.
* After a reboot (the kernel's boot id changed) nothing recorded is trusted until a full listing
  has checked every file: the catalog is written without ``fsync`` (SQLite WAL, synchronous
  NORMAL), so a power loss may take its last commits but never corrupts it.
* What the cheap check cannot see: a file overwritten *in place* by another program (same name,
  so the directory does not change) keeps its old position in paged listings until a full
  listing or a read of that session notices it; on a page it is always shown as it is.

When the catalog cannot be used (a read-only directory, a damaged database), listings fall back
to reading every file's header.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import _db

CATALOG_FILE = "catalog.sqlite"
SCHEMA_VERSION = 3
SETTLE_NS = 100_000_000
"""A directory time recorded less than this after it was set is not trusted (one clock tick of
the file system may hold several changes); 2 s on file systems with whole-second times."""
_SCHEMA = (
    "DROP TABLE IF EXISTS sessions",
    "DROP TABLE IF EXISTS pending",
    "DROP TABLE IF EXISTS meta",
    # a rowid table: a row (~300 bytes) stays on its leaf page (no overflow page), and an
    # update in place (upsert) changes that page and one page of the activity index
    "CREATE TABLE sessions (id TEXT NOT NULL UNIQUE, upd INTEGER NOT NULL, row TEXT NOT NULL)",
    "CREATE INDEX sessions_by_activity ON sessions (upd, id)",
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID",
)
_UPSERT = (
    "INSERT INTO sessions (id, upd, row) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET upd = excluded.upd, row = excluded.row"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_counter = itertools.count()
_BOOT: list[str] = []


def boot_id() -> str:
    """An id of the running kernel boot (a reboot may have dropped the last catalog commits)."""
    if not _BOOT:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT.append(f.read().strip())
        except OSError:  # elsewhere: the boot time, to the minute
            _BOOT.append(str(round((time.time() - time.monotonic()) / 60)))
    return _BOOT[0]


def sort_key(when: datetime) -> int:
    """``updated_at`` as integer microseconds since the epoch (the catalog's order)."""
    if when.tzinfo is None:
        when = when.astimezone()
    return (when - _EPOCH) // _US


def settled(mtime_ns: int, seen_ns: int) -> bool:
    """True when a directory time ``mtime_ns`` observed at ``seen_ns`` can name one state."""
    margin = SETTLE_NS if mtime_ns % 1_000_000 else 2_000_000_000
    return seen_ns - mtime_ns >= margin


class Catalog:
    """The SQLite catalog of one directory (thread-safe; reopened after a fork)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index_dir = directory / ".index"
        self.path = self.index_dir / CATALOG_FILE
        self.pending_dir = self.index_dir / "pending"
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._ino = 0
        self._lock = threading.RLock()
        self._broken = False

    # -- connection ----------------------------------------------------------------------------

    def db(self, create: bool = False) -> sqlite3.Connection | None:
        """The connection, or None when there is no usable catalog (``create``: make one)."""
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            ino = 0
        if self._db is not None and self._pid == os.getpid() and self._ino == ino:
            return self._db
        # a forked child never uses its parent's connection, nor anyone a catalog replaced
        self._db = None
        if not create and not ino:
            return None
        try:
            self.index_dir.mkdir(mode=0o700, exist_ok=True)
            db = self._connect()
            try:
                _db.retry_busy(lambda: self._setup(db))
            except sqlite3.OperationalError:  # busy, locked, read-only: not damage
                db.close()
                raise
            except sqlite3.DatabaseError:  # not a database, or malformed: only a cache
                db.close()
                if not create:
                    raise
                self._discard()
                db = self._connect()
                self._setup(db)
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
            ino = os.stat(self.path).st_ino
        except (OSError, sqlite3.Error):
            return None
        self._db, self._pid, self._ino = db, os.getpid(), ino
        return db

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False
        )

    def _discard(self) -> None:
        """Move a damaged database aside (it is only a cache)."""
        stamp = f"{os.getpid()}.{time.time_ns()}"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                src = self.path.with_name(self.path.name + suffix)
                os.replace(src, self.path.with_name(f".{self.path.name}{suffix}.damaged.{stamp}"))
        for old in self.index_dir.glob(f".{CATALOG_FILE}*.damaged.*"):
            with contextlib.suppress(OSError):
                old.unlink()

    @staticmethod
    def _setup(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA page_size=512")  # a write changes 2 pages: small WAL frames
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # derived data; see boot_id for power losses
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for statement in _SCHEMA:  # one by one: executescript would commit first
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection (reopened when used again)."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

    # -- writers -----------------------------------------------------------------------------

    def begin_write(self, session_id: str) -> None:
        """Mark ``session_id`` pending, before its files change (the caller holds its lock):
        an empty file ``.index/pending/<id>`` (no data written, no ``fsync``)."""
        try:
            fd = os.open(self.pending_dir / session_id, os.O_WRONLY | os.O_CREAT, 0o600)
        except FileNotFoundError:
            try:
                self.pending_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.pending_dir / session_id, os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError:
                self._mark_stale()
                return
        except OSError:
            self._mark_stale()
            return
        os.close(fd)

    def end_write(self, session_id: str, row: list[Any] | None, upd: int) -> None:
        """Store the row of a session just written (None: removed) and clear its mark."""
        with self._lock:
            db = self.db(create=True)
            if db is None:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if row is None:
                        db.execute("DELETE FROM sessions WHERE id=?", (session_id,))
                    else:
                        db.execute(
                            _UPSERT,
                            (session_id, upd, json.dumps(row, ensure_ascii=False)),
                        )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error:
                return  # the mark stays: readers read this session from its files
        self._unmark([session_id])

    def _unmark(self, ids: Iterable[str]) -> None:
        for session_id in ids:
            with contextlib.suppress(OSError):
                os.unlink(self.pending_dir / session_id)

    def pending(self) -> set[str]:
        """The ids marked pending (being written, or left so by a killed writer)."""
        try:
            return set(os.listdir(self.pending_dir))
        except OSError:
            return set()

    def _mark_stale(self) -> None:
        """The catalog could not record a write: make readers check every file."""
        with contextlib.suppress(OSError):
            self.index_dir.mkdir(mode=0o700, exist_ok=True)
            name = f"catalog.stale.{os.getpid()}.{next(_counter)}"
            (self.index_dir / name).touch()

    def stale_marks(self) -> list[Path]:
        """Marks left by writers that could not update the catalog."""
        try:
            return [
                Path(e.path) for e in os.scandir(self.index_dir) if e.name.startswith("catalog.st")
            ]
        except OSError:
            return []

    # -- readers -----------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """The recorded state (names_mtime, names_seen, boot, tz, ...); {} when none."""
        db = self.db()
        if db is None:
            return {}
        with self._lock:
            return dict(db.execute("SELECT k, v FROM meta").fetchall())

    def page(
        self, limit: int, after: tuple[int, str] | None
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """Up to ``limit`` (id, row JSON) after ``after`` (sort key, id), newest first, leaving
        out pending sessions; and the pending ids."""
        db = self.db()
        assert db is not None
        with self._lock:
            db.execute("BEGIN")
            try:
                pending = sorted(self.pending())
                where = "WHERE (upd, id) < (?, ?)" if after is not None else ""
                skip = " AND" if where else "WHERE"
                marks = ",".join("?" * len(pending))
                sql = (
                    f"SELECT id, row FROM sessions {where}"
                    + (f"{skip} id NOT IN ({marks})" if pending else "")
                    + " ORDER BY upd DESC, id DESC LIMIT ?"
                )
                args = (*(after or ()), *pending, limit)
                rows = db.execute(sql, args).fetchall()
            finally:
                db.execute("COMMIT")
        return rows, pending

    def everything(self) -> tuple[dict[str, list[Any]], set[str]]:
        """Every row (id -> row) and the pending ids."""
        db = self.db()
        if db is None:
            return {}, set()
        with self._lock:
            db.execute("BEGIN")
            try:
                blob = db.execute(
                    "SELECT '{' || coalesce(group_concat(json_quote(id) || ':' || row, ','), '')"
                    " || '}' FROM sessions"
                ).fetchone()[0]
            finally:
                db.execute("COMMIT")
        pending = self.pending()
        try:
            return json.loads(blob), pending
        except ValueError:
            return {}, pending

    def ids(self) -> tuple[set[str], set[str]]:
        """The ids with a row, and the pending ids."""
        db = self.db()
        if db is None:
            return set(), set()
        with self._lock:
            db.execute("BEGIN")
            try:
                ids = {r[0] for r in db.execute("SELECT id FROM sessions")}
            finally:
                db.execute("COMMIT")
        return ids, self.pending()

    def repair(
        self,
        rows: Iterable[tuple[str, list[Any], int]],
        gone: Iterable[str],
        check: Callable[[str, list[Any] | None], bool],
        meta: dict[str, str] | None = None,
        clear_pending: Iterable[str] = (),
    ) -> None:
        """Store rows read by a reader and drop rows of removed files, each only when
        ``check(id, key)`` still confirms it inside the write (a writer may have changed the
        session since it was read), and never over a pending mark; then record ``meta``."""
        db = self.db(create=True)
        if db is None:
            return
        rows, gone = list(rows), list(gone)
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    clear = list(clear_pending)
                    pending = self.pending() - set(clear)  # inside the write: see the module doc
                    for sid, row, upd in rows:
                        if sid not in pending and check(sid, row[0]):
                            db.execute(
                                _UPSERT,
                                (sid, upd, json.dumps(row, ensure_ascii=False)),
                            )
                    for sid in gone:
                        if sid not in pending and check(sid, None):
                            db.execute("DELETE FROM sessions WHERE id=?", (sid,))
                    for k, v in (meta or {}).items():
                        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error:
                return  # derived data: the next reader tries again
        self._unmark(clear)  # their rows are stored (the caller holds their locks)

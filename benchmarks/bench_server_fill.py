"""Fill a store with many small sessions quickly, for ``bench_server.py``'s first-page timing.

For each owner, one session is written by the store's public ``append`` (the template: its
header, title, version and messages are exactly what the store writes for a new session), then
copied N times in bulk, in the store's own layout: SQLite and PostgreSQL with one
``INSERT ... SELECT`` per table (the search index is filled by SQLite's triggers and
PostgreSQL's GIN index as for any insert), Redis with pipelined ``HSET``/``RPUSH``/``ZADD``.
Each copy gets its own id (``many_NNNNNN``), its own ``updated_at`` (one microsecond apart,
the highest number newest) and its own version from the store's counter. The TOON file store
(an ``append`` costs a few ms there: 100,000 would take minutes) gets copies of the template's
file, its id and times changed, then one full ``list()`` through the store, which reads the new
files into its catalog as it does for files copied into the directory by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from scratchy.sessions import open_store
from scratchy.stores import _db

BASE = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"}]


def _name(i: int) -> str:
    return f"many_{i:06d}"


def _postgres(store: Any, ns: str, count: int) -> None:
    def run(conn: Any) -> None:
        template = ns + _name(0)
        conn.execute(
            "INSERT INTO scratchy_sessions (id, created_at, updated_at, title, metadata, "
            "message_count, size, version) "
            "SELECT %s || 'many_' || lpad(g::text, 6, '0'), "
            "t.created_at + g * interval '1 microsecond', "
            "t.updated_at + g * interval '1 microsecond', "
            "t.title, t.metadata, t.message_count, t.size, nextval('scratchy_version_seq') "
            "FROM scratchy_sessions t, generate_series(1, %s) g "
            "WHERE t.id = %s AND t.deleted_at IS NULL ORDER BY g",
            (ns, count - 1, template),
        )
        conn.execute(
            "INSERT INTO scratchy_messages (session_pk, idx, role, data, body) "
            "SELECT s.pk, m.idx, m.role, m.data, m.body FROM scratchy_sessions s, "
            "scratchy_messages m JOIN scratchy_sessions t ON t.pk = m.session_pk "
            "WHERE t.id = %s AND t.deleted_at IS NULL AND s.deleted_at IS NULL "
            "AND s.id LIKE %s AND s.id <> t.id",
            (template, ns.replace("_", r"\_") + r"many\_%"),
        )
        conn.execute("ANALYZE scratchy_sessions")

    store._tx(run, write=True)


def _sqlite(store: Any, ns: str, count: int) -> None:
    with store._write() as db:
        row = db.execute(
            "SELECT created_at, updated_at, title, metadata, message_count, size, pk "
            "FROM sessions WHERE id=? AND deleted_at IS NULL",
            (ns + _name(0),),
        ).fetchone()
        created, updated = _db.from_iso(row[0]), _db.from_iso(row[1])
        first = db.execute("SELECT value FROM counters WHERE name='version'").fetchone()[0]
        db.executemany(
            "INSERT INTO sessions (id, created_at, updated_at, title, metadata, message_count, "
            "size, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ns + _name(i),
                    _db.iso(created + timedelta(microseconds=i)),
                    _db.iso(updated + timedelta(microseconds=i)),
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    first + i,
                )  # fmt: skip
                for i in range(1, count)
            ],
        )
        db.execute("UPDATE counters SET value=? WHERE name='version'", (first + count,))
        db.execute(
            "INSERT INTO messages (session_pk, idx, role, data, text) "
            "SELECT s.pk, m.idx, m.role, m.data, m.text FROM sessions s, messages m "
            "WHERE m.session_pk = ? AND s.pk > ? AND s.deleted_at IS NULL ORDER BY s.pk, m.idx",
            (row[6], row[6]),
        )
        db.execute("ANALYZE")


def _redis(store: Any, ns: str, count: int) -> None:
    from scratchy.stores.redis import _score

    r = store._redis
    key0 = ns + _name(0)
    head = r.hgetall(store._k("h:", key0))
    rows = r.lrange(store._k("m:", key0), 0, -1)
    created, updated = _db.from_iso(head["created_at"]), _db.from_iso(head["updated_at"])
    last = r.incrby(store._k("seq"), count - 1)
    for start in range(1, count, 2000):
        pipe = r.pipeline(transaction=False)
        scores = {}
        for i in range(start, min(count, start + 2000)):
            key, when = ns + _name(i), updated + timedelta(microseconds=i)
            h = dict(head)
            h.update(
                created_at=_db.iso(created + timedelta(microseconds=i)),
                updated_at=_db.iso(when),
                id=key,
                updated_score=_score(when),
                version=str(last - count + 1 + i),
            )
            pipe.hset(store._k("h:", key), mapping=h)
            pipe.rpush(store._k("m:", key), *rows)
            scores[key] = float(_score(when))
        pipe.zadd(store._index(ns), scores)
        pipe.execute()


def _toon(store: Any, ns: str, count: int) -> None:
    from scratchy.stores.toon_files import SUFFIX

    text = (store.directory / (_name(0) + SUFFIX)).read_text(encoding="utf-8")
    info = store.info(_name(0))
    created, updated = _db.iso(info.created_at), _db.iso(info.updated_at)
    assert f"session_id: {_name(0)}\n" in text and created in text and updated in text
    for i in range(1, count):
        copy = text.replace(f"session_id: {_name(0)}\n", f"session_id: {_name(i)}\n", 1)
        copy = copy.replace(
            f'updated_at: "{updated}"',
            f'updated_at: "{_db.iso(info.updated_at + timedelta(microseconds=i))}"',
            1,
        ).replace(
            f'created_at: "{created}"',
            f'created_at: "{_db.iso(info.created_at + timedelta(microseconds=i))}"',
            1,
        )
        (store.directory / (_name(i) + SUFFIX)).write_text(copy, encoding="utf-8")
    store.list()  # the new files go into the catalog


def fill(
    location: str, owners: dict[str | None, int], *, progress: Callable[[str], None] = print
) -> None:
    """``count`` sessions ``many_NNNNNN`` for each owner (None: the unowned root), written in
    the order given (the last owner's sessions are the newest)."""
    base = open_store(location)
    for owner, count in owners.items():
        store = base if owner is None else base.scoped(owner)
        started = time.monotonic()
        store.append(_name(0), BASE)
        bulk = {
            "PostgresStore": _postgres,
            "SQLiteStore": _sqlite,
            "RedisStore": _redis,
            "TOONFileStore": _toon,
        }
        bulk[type(base).__name__](store, store._ns, count)
        who = owner or "(no owner)"
        progress(f"  {count} sessions of {who} in {time.monotonic() - started:.1f} s")


def check(location: str, owner: str | None, count: int) -> None:
    """Raise unless the store lists ``count`` sessions for ``owner``, the newest first."""
    base = open_store(location)
    store = base if owner is None else base.scoped(owner)
    page = store.list_page(limit=3)
    names = [i.id for i in page.items]
    want = [_name(count - 1 - i) for i in range(3)]
    if names != want or store.load(want[0]) is None:
        raise RuntimeError(f"filled store lists {names}, not {want}: {json.dumps(str(base))}")

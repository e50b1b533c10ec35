"""Memories in PostgreSQL: one ``scratchy_memories`` table beside the session tables.

Columns: ``owner`` (the namespace, ``""`` or ``alice/``), ``id``, ``session_id`` (provenance),
``data`` (the entry as JSON text), ``body`` (the indexed text) and ``seq`` (insertion order).
A stored ``tsv`` column (``to_tsvector('simple', body)``) with a GIN index serves recall,
ranked with ``ts_rank`` (words split as session search splits them). The table is created on
first use, under an advisory lock, in the store's schema; updates lock the row (``SELECT ...
FOR UPDATE``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .memory_base import Memory, MemoryBackend, MemoryHit, Term, rarest, search_body, with_prefix

if TYPE_CHECKING:
    from .postgres import PostgresStore

SCHEMA = [
    "SELECT pg_advisory_xact_lock(hashtext('scratchy memories schema'))",
    """CREATE TABLE IF NOT EXISTS scratchy_memories (
        seq bigint GENERATED ALWAYS AS IDENTITY,
        owner text NOT NULL,
        id text NOT NULL,
        session_id text,
        data text NOT NULL,
        body text NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
        PRIMARY KEY (owner, id)
    )""",
    "CREATE INDEX IF NOT EXISTS scratchy_memories_fts ON scratchy_memories USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS scratchy_memories_session ON scratchy_memories (owner, session_id)",
]
RANK_AT_MOST = 5_000
_stats: dict[tuple[str, str | None], _Stats] = {}
_ready: set[tuple[str, str | None]] = set()
_ready_lock = threading.Lock()


def tsquery_any(terms: list[Term]) -> str:
    """A ``to_tsquery`` text where any term may match (``:*`` on prefix terms)."""
    from .postgres import _lexeme

    parts = []
    for phrase, prefix in terms:
        text = " <-> ".join(_lexeme(w) for w in phrase)
        parts.append(f"({text}:*)" if prefix else f"({text})")
    return " | ".join(parts)


class _Stats:
    """The table's most common lexemes and their frequencies (PostgreSQL's own statistics of
    the ``tsv`` column, kept by ANALYZE/autovacuum), read at most once a minute."""

    def __init__(self) -> None:
        self.read_at = -1e9
        self.freqs: dict[str, float] = {}
        self.rows = 0.0
        self.floor = 0.0

    def refresh(self, conn: Any) -> None:
        row = conn.execute(
            "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples "
            "FROM pg_stats s JOIN pg_class c ON c.oid = 'scratchy_memories'::regclass "
            "WHERE s.tablename = 'scratchy_memories' AND s.attname = 'tsv' "
            "AND s.schemaname = current_schema()"
        ).fetchone()
        self.read_at = time.monotonic()
        if row is None or row[0] is None:
            self.freqs, self.rows, self.floor = {}, 0.0, 0.0
            return
        elems, freqs, rows = row
        self.freqs = dict(zip(elems, freqs, strict=False))
        self.rows = max(float(rows or 0), 0.0)
        # A lexeme not in the list: what PostgreSQL's own estimate takes (ts_selfuncs.c).
        least = float(freqs[len(elems)]) if len(freqs) > len(elems) else 0.0
        self.floor = min(0.005, least / 2)

    def matches(self, term: Term) -> int:
        words, prefix = term
        counts = []
        for i, word in enumerate(words):
            w = word.lower()
            if prefix and i == len(words) - 1:
                f = sum(v for k, v in self.freqs.items() if k.startswith(w)) or self.floor
            else:
                f = self.freqs.get(w, self.floor)
            counts.append(int(f * self.rows))
        return min(counts) if counts else 0


class PostgresMemory(MemoryBackend):
    """One owner's memories in the PostgreSQL database of ``store``."""

    def __init__(self, store: PostgresStore, *, owner: str = "") -> None:
        self.store = store
        self.owner = owner
        self.location = store.location
        key = (store.location, store.schema)
        with _ready_lock:
            if key not in _ready:
                store._tx(self._create, write=True)
                _ready.add(key)

    @staticmethod
    def _create(conn: Any) -> None:
        if conn.execute("SELECT to_regclass('scratchy_memories')").fetchone()[0]:
            return
        for statement in SCHEMA:
            conn.execute(statement)

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return self.store._tx(lambda c: c.execute(sql, args).fetchall(), write=False)

    def get(self, memory_id: str) -> Memory | None:
        rows = self._read(
            "SELECT data FROM scratchy_memories WHERE owner=%s AND id=%s", (self.owner, memory_id)
        )
        return Memory.from_dict(json.loads(rows[0][0])) if rows else None

    def insert(self, memory: Memory) -> None:
        self.store._tx(
            lambda c: c.execute(
                "INSERT INTO scratchy_memories (owner, id, session_id, data, body) "
                "VALUES (%s, %s, %s, %s, %s)",
                (self.owner, memory.id, memory.session_id, memory.to_json(), search_body(memory)),
            ),
            write=True,
        )

    def insert_many(self, memories: list[Memory]) -> None:
        rows = [(self.owner, m.id, m.session_id, m.to_json(), search_body(m)) for m in memories]
        self.store._tx(
            lambda c: c.cursor().executemany(
                "INSERT INTO scratchy_memories (owner, id, session_id, data, body) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            ),
            write=True,
        )
        if len(rows) >= 1000:  # what autovacuum would do soon: statistics for recall
            self.store._tx(lambda c: c.execute("ANALYZE scratchy_memories"), write=False)

    def modify(self, memory_id: str, fn: Callable[[Memory], Memory | None]) -> Memory | None:
        def run(c: Any) -> Memory | None:
            row = c.execute(
                "SELECT data FROM scratchy_memories WHERE owner=%s AND id=%s FOR UPDATE",
                (self.owner, memory_id),
            ).fetchone()
            if row is None:
                return None
            old = Memory.from_dict(json.loads(row[0]))
            new = fn(old)
            if new is None:
                return old
            c.execute(
                "UPDATE scratchy_memories SET session_id=%s, data=%s, body=%s "
                "WHERE owner=%s AND id=%s",
                (new.session_id, new.to_json(), search_body(new), self.owner, memory_id),
            )
            return new

        return self.store._tx(run, write=True)

    def delete(self, ids: list[str]) -> int:
        if not ids:
            return 0
        return int(
            self.store._tx(
                lambda c: (
                    c.execute(
                        "DELETE FROM scratchy_memories WHERE owner=%s AND id = ANY(%s)",
                        (self.owner, list(ids)),
                    ).rowcount
                ),
                write=True,
            )
        )

    def all(self) -> list[Memory]:
        rows = self._read(
            "SELECT data FROM scratchy_memories WHERE owner=%s ORDER BY seq", (self.owner,)
        )
        return [Memory.from_dict(json.loads(r[0])) for r in rows]

    def count(self) -> int:
        return int(
            self._read("SELECT count(*) FROM scratchy_memories WHERE owner=%s", (self.owner,))[0][0]
        )

    def from_session(self, session_id: str) -> list[str]:
        rows = self._read(
            "SELECT id FROM scratchy_memories WHERE owner=%s AND session_id=%s ORDER BY seq",
            (self.owner, session_id),
        )
        return [r[0] for r in rows]

    def search(self, terms: list[list[str]], limit: int) -> list[MemoryHit]:
        if not terms or limit <= 0:
            return []
        stats = _stats.setdefault((self.store.location, self.store.schema), _Stats())

        def run(c: Any) -> list[Any]:
            if time.monotonic() - stats.read_at > 60:
                stats.refresh(c)
            query = tsquery_any(rarest(with_prefix(terms), stats.matches, RANK_AT_MOST))
            # Even the rarest word may match more than RANK_AT_MOST memories: then rank only
            # the most recently stored of its matches; the entries are read for the best only.
            return c.execute(
                "SELECT m.data, r.rank FROM (SELECT id, seq, ts_rank(tsv, q) AS rank FROM "
                "(SELECT id, seq, tsv, to_tsquery('simple', %(q)s) AS q FROM scratchy_memories "
                "WHERE owner = %(owner)s AND tsv @@ to_tsquery('simple', %(q)s) "
                "ORDER BY seq DESC LIMIT %(cap)s) AS cand "
                "ORDER BY rank DESC, seq DESC LIMIT %(limit)s) AS r "
                "JOIN scratchy_memories m ON m.owner = %(owner)s AND m.id = r.id "
                "ORDER BY r.rank DESC, r.seq DESC",
                {"q": query, "owner": self.owner, "cap": RANK_AT_MOST, "limit": limit},
            ).fetchall()

        rows = self.store._tx(run, write=False)
        return [MemoryHit(Memory.from_dict(json.loads(d)), float(r)) for d, r in rows]

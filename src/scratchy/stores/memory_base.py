"""Memories kept beside the sessions: the entry type and what each backend supplies.

A memory is a short text the user wanted kept across sessions ("My name is Ada", "this project
uses tabs"), with tags, times, the session and message it came from (provenance), and the texts
it had before an update (history). Each owner (``BaseStore.scoped(owner)``) has memories of its
own, kept by the same backend as its sessions:

* TOON files and SQLite: an SQLite database with an FTS5 index (``<dir>/.memory/memories.sqlite``
  for the file store, tables ``memory_entries``/``memory_fts`` inside an SQLite store's file);
* Redis: a hash of entries and a change log; each process ranks in an in-memory FTS5 mirror
  brought up to date from the log before each query;
* PostgreSQL: a ``scratchy_memories`` table with a stored ``tsvector`` column (GIN index).

Recall is the session search's machinery (:mod:`.search_text`): the same word splitting (CJK
characters one by one), BM25 or ``ts_rank`` ranking, the last word a prefix; but any word may
match (a first message rarely contains every word of a memory), common English words left out.
The policy (what may be stored, duplicates, contradictions) is in :mod:`scratchy.memory`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import BaseStore, fold, query_terms, split_cjk

__all__ = ["Memory", "MemoryBackend", "MemoryHit", "backend_for", "recall_terms"]

STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves remember recall know tell please hi hello hey thanks""".split()
)
"""Words left out of a recall query when other words remain (they match nearly everything)."""


@dataclass(slots=True)
class Memory:
    """One memory entry."""

    id: str
    text: str
    tags: list[str] = field(default_factory=list)
    created_at: str = ""
    """UTC ISO-8601 (microseconds)."""
    updated_at: str = ""
    source: dict[str, Any] | None = None
    """Provenance: ``{"session": id, "message": index}`` (None when added by hand)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Superseded texts, oldest first: ``{"text", "until", "source"}``."""

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-able data (exports, ``--json``, the HTTP API)."""
        return {
            "id": self.id,
            "text": self.text,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "source": dict(self.source) if self.source else None,
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Memory:
        """The entry of :meth:`as_dict` data."""
        return cls(
            id=str(data["id"]),
            text=str(data["text"]),
            tags=[str(t) for t in data.get("tags") or []],
            created_at=str(data.get("created_at") or ""),
            updated_at=str(data.get("updated_at") or ""),
            source=data.get("source") or None,
            history=list(data.get("history") or []),
        )

    def to_json(self) -> str:
        """Compact JSON of :meth:`as_dict`."""
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))

    @property
    def session_id(self) -> str | None:
        """The session this memory came from, if any."""
        return (self.source or {}).get("session")


@dataclass(slots=True)
class MemoryHit:
    """A recalled memory and its rank (higher is better; backend-specific scale)."""

    memory: Memory
    score: float


def search_body(memory: Memory) -> str:
    """What is indexed of a memory: its text and tags (CJK characters split)."""
    return body_of(memory.text, memory.tags)


def body_of(text: str, tags: list[str]) -> str:
    """:func:`search_body` of a text and its tags."""
    text = text + ("\n" + " ".join(tags) if tags else "")
    return split_cjk(text.replace("\x00", " "))


def recall_terms(query: str) -> list[list[str]]:
    """The terms of a recall query: the search terms without common words (unless nothing
    else is left), duplicates dropped."""
    terms = query_terms(query)
    kept = [t for t in terms if not (len(t) == 1 and fold(t[0]) in STOPWORDS)] or terms
    seen: set[tuple[str, ...]] = set()
    out = []
    for t in kept:
        key = tuple(fold(w) for w in t)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:32]


_CJK_ONE = re.compile(r"^[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]$")


Term = tuple[list[str], bool]
"""A query term: its words (a phrase) and whether it matches as a prefix."""


def with_prefix(terms: list[list[str]]) -> list[Term]:
    """Each term with its prefix flag: the last term, when one (non-CJK) word, is a prefix."""
    last = len(terms) - 1
    return [
        (t, i == last and len(t) == 1 and not _CJK_ONE.match(t[0])) for i, t in enumerate(terms)
    ]


def rarest(terms: list[Term], matches: Callable[[Term], int], cap: int) -> list[Term]:
    """The terms worth matching: the rarest first, while their matches add up to at most
    ``cap`` (always at least one), in query order. A word in most memories adds almost nothing
    to a BM25 rank but costs a match to rank for each of them; leaving it out keeps recall
    fast without losing the rare words' older matches."""
    counted = sorted((matches(t), n) for n, t in enumerate(terms))
    kept, total = [], 0
    for count, n in counted:
        if kept and total + count > cap:
            break
        kept.append(n)
        total += count
    return [terms[n] for n in sorted(kept)]


def fts5_any(terms: list[Term]) -> str:
    """An FTS5 MATCH expression where any term may match."""
    out = []
    for phrase, prefix in terms:
        quoted = '"' + " ".join(w.replace('"', '""') for w in phrase) + '"'
        out.append(quoted + "*" if prefix else quoted)
    return " OR ".join(out)


class MemoryBackend:
    """Storage of one owner's memories. Every method is atomic; implementations are
    thread-safe and safe across processes."""

    location: str = ""

    def get(self, memory_id: str) -> Memory | None:
        """The entry, or None."""
        raise NotImplementedError

    def insert(self, memory: Memory) -> None:
        """Store a new entry (its id is new)."""
        raise NotImplementedError

    def insert_many(self, memories: list[Memory]) -> None:
        """Store many new entries (imports, benchmarks); one transaction where possible."""
        for m in memories:
            self.insert(m)

    def modify(self, memory_id: str, fn: Callable[[Memory], Memory | None]) -> Memory | None:
        """Replace the entry by ``fn(entry)`` atomically (``fn`` may run more than once; when
        it returns None nothing is written). None when there is no such entry."""
        raise NotImplementedError

    def delete(self, ids: list[str]) -> int:
        """Remove entries; returns how many existed."""
        raise NotImplementedError

    def all(self) -> list[Memory]:
        """Every entry, oldest first."""
        raise NotImplementedError

    def count(self) -> int:
        """How many entries there are."""
        return len(self.all())

    def search(self, terms: list[list[str]], limit: int) -> list[MemoryHit]:
        """Entries matching any term, best first."""
        raise NotImplementedError

    def from_session(self, session_id: str) -> list[str]:
        """Ids of the entries whose provenance is ``session_id``."""
        return [m.id for m in self.all() if m.session_id == session_id]

    def close(self) -> None:
        """Release connections."""


_files: dict[tuple[str, str], MemoryBackend] = {}
_lock = threading.Lock()


def backend_for(store: BaseStore) -> MemoryBackend:
    """The memory backend of ``store``'s owner (``store._ns``; a scoped file store is a
    directory of its own). SQLite databases are opened once per process and path."""
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore
    from .toon_files import TOONFileStore

    ns = store._ns
    if isinstance(store, (TOONFileStore, SQLiteStore)):
        from .memory_sqlite import SQLiteMemory

        if isinstance(store, TOONFileStore):
            path = store.directory.resolve() / ".memory" / "memories.sqlite"
        else:
            path = store.path
        with _lock:
            found = _files.get((str(path), ns))
            if found is None:
                found = _files[(str(path), ns)] = SQLiteMemory(path, owner=ns)
            return found
    if isinstance(store, PostgresStore):
        from .memory_postgres import PostgresMemory

        return PostgresMemory(store, owner=ns)
    from .redis import RedisStore

    if isinstance(store, RedisStore):
        from .memory_redis import RedisMemory

        return RedisMemory(store, owner=ns)
    raise TypeError(
        f"{type(store).__name__} keeps no memories (TOON, SQLite, Redis, PostgreSQL do)"
    )

"""Memories in Redis, ranked in a local FTS5 mirror.

Keys (default prefix ``scratchy:``; ``<ns>`` is the owner's namespace, ``alice/``, or empty):

* ``scratchy:mem:<ns>`` a HASH of entry id -> the entry as JSON (the source of truth);
* ``scratchy:memlog:<ns>`` a ZSET of entry ids scored by the change counter when each last
  changed (deleted ids stay, so that other processes learn of the deletion);
* ``scratchy:memseq:<ns>`` the change counter.

Every write is one Lua script (conditional on the entry's previous JSON for updates). Redis has
no ranked full-text search without the RediSearch module, so each process keeps an in-memory
SQLite FTS5 copy of the owner's entries: before a query it reads the counter, and when it moved,
only the entries changed since (``ZRANGEBYSCORE``) are fetched. The first query of a process
loads every entry once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .memory_base import Memory, MemoryBackend, MemoryHit
from .memory_sqlite import SQLiteMemory

if TYPE_CHECKING:
    from .redis import RedisStore

# KEYS: hash, log, seq. ARGV: id, new JSON ("" deletes), expected JSON ("*": anything,
# "": must be absent). Returns the new counter, or -1 when the entry is not as expected.
_PUT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] ~= '*' then
  if ARGV[3] == '' then
    if cur then return -1 end
  elseif cur ~= ARGV[3] then
    return -1
  end
end
if ARGV[2] == '' then
  if not cur then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
return seq
"""

_mirrors: dict[tuple[str, str, str], tuple[SQLiteMemory, list[int]]] = {}
_mirrors_lock = threading.Lock()


class RedisMemory(MemoryBackend):
    """One owner's memories in the Redis server of ``store``."""

    def __init__(self, store: RedisStore, *, owner: str = "") -> None:
        self.store = store
        self.owner = owner
        self.location = store.location
        self._r = store._redis
        self._hash = store._k("mem:", owner)
        self._log = store._k("memlog:", owner)
        self._seq = store._k("memseq:", owner)
        self._put = self._r.register_script(_PUT)
        with _mirrors_lock:
            key = (store.location, store.prefix, owner)
            if key not in _mirrors:
                _mirrors[key] = (SQLiteMemory(None, owner=owner), [0])
            self._mirror, self._synced = _mirrors[key]

    def _write(self, memory_id: str, new: str, expected: str) -> int:
        with self.store._guard():
            keys = [self._hash, self._log, self._seq]
            return int(self._put(keys=keys, args=[memory_id, new, expected]))

    def get(self, memory_id: str) -> Memory | None:
        with self.store._guard():
            raw = self._r.hget(self._hash, memory_id)
        return Memory.from_dict(json.loads(raw)) if raw else None

    def insert(self, memory: Memory) -> None:
        if self._write(memory.id, memory.to_json(), "") < 0:
            raise ValueError(f"memory id {memory.id} exists")

    def insert_many(self, memories: list[Memory]) -> None:
        for start in range(0, len(memories), 1000):
            with self.store._guard():
                pipe = self._r.pipeline(transaction=False)
                for m in memories[start : start + 1000]:
                    self._put(
                        keys=[self._hash, self._log, self._seq],
                        args=[m.id, m.to_json(), ""],
                        client=pipe,
                    )
                pipe.execute()

    def modify(self, memory_id: str, fn: Callable[[Memory], Memory | None]) -> Memory | None:
        while True:
            with self.store._guard():
                raw = self._r.hget(self._hash, memory_id)
            if raw is None:
                return None
            new = fn(Memory.from_dict(json.loads(raw)))
            if new is None:
                return Memory.from_dict(json.loads(raw))
            if self._write(memory_id, new.to_json(), raw) >= 0:
                return new

    def delete(self, ids: list[str]) -> int:
        return sum(1 for i in ids if self._write(i, "", "*") > 0)

    def all(self) -> list[Memory]:
        with self.store._guard():
            rows = self._r.hvals(self._hash)
        entries = [Memory.from_dict(json.loads(r)) for r in rows]
        entries.sort(key=lambda m: (m.created_at, m.id))
        return entries

    def count(self) -> int:
        with self.store._guard():
            return int(self._r.hlen(self._hash))

    def sync(self) -> int:
        """Bring this process's FTS5 mirror up to date; returns the entries fetched."""
        with self._mirror._lock:
            with self.store._guard():
                seq = int(self._r.get(self._seq) or 0)
                if seq == self._synced[0]:
                    return 0
                if seq < self._synced[0]:  # the keys were dropped and started again
                    self._mirror.close()
                    self._synced[0] = 0
                if self._synced[0] == 0:  # first sync: every entry, in one read
                    entries = self._r.hgetall(self._hash)
                    rows, deletes = list(entries.items()), []
                    changed = rows
                else:
                    changed = self._r.zrangebyscore(self._log, f"({self._synced[0]}", seq)
                    rows, deletes = [], []
                    for start in range(0, len(changed), 1000):
                        ids = changed[start : start + 1000]
                        for i, raw in zip(ids, self._r.hmget(self._hash, ids), strict=True):
                            if raw is None:
                                deletes.append(i)
                            else:
                                rows.append((i, raw))
            self._mirror.apply_raw(rows, deletes)
            self._synced[0] = seq
            return len(changed)

    def search(self, terms: list[list[str]], limit: int) -> list[MemoryHit]:
        self.sync()
        return self._mirror.search(terms, limit)

    def from_session(self, session_id: str) -> list[str]:
        self.sync()
        return self._mirror.from_session(session_id)

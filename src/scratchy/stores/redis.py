"""Sessions in Redis: ``redis://host:port/db`` (or ``rediss://`` for TLS).

Query parameters of our own (removed before the URL reaches redis-py): ``prefix`` (key prefix,
default ``scratchy:``) and ``retries`` (reconnection attempts per command, default 8, with
exponential backoff up to one second: a server restart of a few seconds is ridden out).

Keys (shown for the default prefix ``scratchy:``; ``<key>`` is the session id, prefixed by its
owner's namespace, ``alice/notes``, in a :meth:`~scratchy.stores.base.BaseStore.scoped` store):

* ``scratchy:h:<key>`` a HASH, the header (``created_at``, ``updated_at``, ``updated_score``,
  ``title``, ``metadata`` JSON, ``count``, ``size``, ``version``), and ``scratchy:m:<key>`` a
  LIST of the messages as JSON, so an append is one ``RPUSH`` of the new messages;
* ``scratchy:index`` a ZSET of the live keys of the root namespace scored by ``updated_at``
  (``scratchy:index:alice/`` for owner ``alice``'s), so a page of the newest sessions costs the
  page; ``scratchy:seq`` the global write counter, whose next value becomes the session's
  ``version`` on every write;
* the trash: deleting renames both keys to ``scratchy:th:<key>:<n>`` / ``scratchy:tm:<key>:<n>``
  (with ``deleted_at`` in the hash) and scores ``<key>:<n>`` in the ZSET ``scratchy:trash`` (or
  ``scratchy:trash:alice/``);
* ``scratchy:lock:<key>`` a session's turn lock (a token with a lease, see ``turn_lock``).

Redis has no row locks, so writes are optimistic: a write reads the header (and the messages
when it needs them), decides in Python (:class:`~scratchy.stores.base.BaseStore`: conflicts,
title, usage totals) and then runs one Lua script that applies it only if the session's version
is still the one it read; if another writer came first, the whole write is worked out again from
what is stored now. Each script call carries a random token recorded (for ten minutes) in
``scratchy:w:<token>``: when redis-py re-sends a command after a dropped connection, a write that
already happened is not applied twice.

Search is a plain scan: every live session of the namespace is read and matched term by term
(case- and accent-insensitive, the last word as a prefix), ranked by term frequency with a length
penalty. It costs time proportional to the stored messages; RediSearch is not used.

One Redis server (or a primary with replicas) is expected: Redis Cluster is not supported, as
the scripts touch keys of several sessions. Durability is Redis's: with ``appendonly yes`` and
the default ``appendfsync everysec``, a crash of the machine can lose the last second of
writes; a clean restart loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..errors import (
    MissingDependencyError,
    SessionCorruptedError,
    StoreUnavailableError,
    UsageError,
)
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
    fold,
    search_text,
    utcnow,
)

__all__ = ["RedisStore"]

DEFAULT_PREFIX = "scratchy:"
WRITE_ATTEMPTS = 100
"""How many times a write is worked out again when other writers keep changing the session."""
LIST_CHUNK = 2000
SEARCH_CHUNK = 100
_FIXED_ARGS = 10
_EPOCH = datetime.fromtimestamp(0, UTC)

# KEYS: h, m, index, seq, token, trash, th, tm.
# ARGV: mode, seen version, key, created, updated, score, title, metadata, size, trash member,
# then the encoded messages. Modes: append, rewrite, header, trash, untrash.
_WRITE = """
local done = redis.call('GET', KEYS[5])
if done then return {'ok', done} end
local version = redis.call('HGET', KEYS[1], 'version') or ''
local mode = ARGV[1]
if mode == 'untrash' then
  if redis.call('EXISTS', KEYS[7]) == 0 then return {'gone', ''} end
end
if version ~= ARGV[2] then return {'moved', version} end
local result
if mode == 'trash' then
  redis.call('RENAME', KEYS[1], KEYS[7])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[8]) end
  redis.call('HSET', KEYS[7], 'deleted_at', ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[6], ARGV[6], ARGV[10])
  result = '1'
elseif mode == 'untrash' then
  redis.call('DEL', KEYS[2])
  redis.call('RENAME', KEYS[7], KEYS[1])
  if redis.call('EXISTS', KEYS[8]) == 1 then redis.call('RENAME', KEYS[8], KEYS[2]) end
  redis.call('HDEL', KEYS[1], 'deleted_at')
  redis.call('HSET', KEYS[1], 'version', redis.call('INCR', KEYS[4]))
  redis.call('ZREM', KEYS[6], ARGV[10])
  redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'updated_score') or '0', ARGV[3])
else
  local size = tonumber(ARGV[9])
  if mode == 'append' then
    size = size + tonumber(redis.call('HGET', KEYS[1], 'size') or '0')
  elseif mode == 'rewrite' then
    redis.call('DEL', KEYS[2])
  end
  for i = 11, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  if mode == 'header' then size = tonumber(redis.call('HGET', KEYS[1], 'size') or '0') end
  redis.call('HSET', KEYS[1], 'id', ARGV[3], 'created_at', ARGV[4], 'updated_at', ARGV[5],
    'updated_score', ARGV[6], 'title', ARGV[7], 'metadata', ARGV[8],
    'count', redis.call('LLEN', KEYS[2]), 'size', size, 'version', redis.call('INCR', KEYS[4]))
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[3])
end
if result == nil then result = cjson.encode(redis.call('HGETALL', KEYS[1])) end
redis.call('SET', KEYS[5], result, 'EX', 600)
return {'ok', result}
"""

# The headers of some sessions as one JSON text (one reply to parse, not thousands).
_LIST = """
local out = {}
for i = 2, #ARGV do
  local h = redis.call('HGETALL', ARGV[1] .. ARGV[i])
  if #h > 0 then out[#out + 1] = {ARGV[i], h} end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_WORD = re.compile(r"\w+", re.UNICODE)


class _Moved(Exception):
    """The session changed between the read and the write of an optimistic write."""


def _ns_of(key: str) -> str:
    return key[: key.rfind("/") + 1]


def _score(when: datetime) -> str:
    return repr(when.timestamp())


class RedisStore(BaseStore):
    """Sessions in Redis. Thread-safe (redis-py's connection pool); safe across processes.

    Args:
        url: ``redis://[:password@]host[:port][/db][?prefix=scratchy:&retries=8]``.
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise MissingDependencyError("redis", "redis", "The Redis session store") from None
        self.location = _db.mask_url(url)
        rest, ours = _db.pop_params(url, ("prefix", "retries"))
        self.prefix = ours.get("prefix", DEFAULT_PREFIX)
        try:
            retries = int(ours.get("retries", "8"))
        except ValueError:
            raise UsageError(f"Bad Redis URL {self.location}: retries must be a number") from None
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        try:
            self._redis = redis.Redis.from_url(
                rest,
                decode_responses=True,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                socket_connect_timeout=5,
                socket_timeout=30,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise UsageError(f"Bad Redis URL {self.location}: {exc}") from None
        self._write_script = self._redis.register_script(_WRITE)
        self._list_script = self._redis.register_script(_LIST)
        self._renew_script = self._redis.register_script(_RENEW)
        self._release_script = self._redis.register_script(_RELEASE)
        with self._guard():
            self._redis.ping()

    # -- plumbing --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn connection failures into ``StoreUnavailableError``."""
        try:
            yield
        except self._errors as exc:
            raise _db.unavailable("Redis", self.location, exc) from exc

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}{name}"

    def _index(self, ns: str) -> str:
        return self._k("index:", ns) if ns else self._k("index")

    def _trash_zset(self, ns: str) -> str:
        return self._k("trash:", ns) if ns else self._k("trash")

    def close(self) -> None:
        """Close the connections (the store reconnects if used again)."""
        self._redis.close()

    def _info(self, key: str, h: dict[str, str]) -> SessionInfo:
        """A header from its hash; a hash that cannot be read gives ``error`` set."""
        try:
            return SessionInfo(
                id=key,
                created_at=_db.from_iso(h["created_at"]),
                updated_at=_db.from_iso(h["updated_at"]),
                message_count=int(h.get("count", 0)),
                title=h.get("title", ""),
                size=int(h.get("size", 0)),
                version=h.get("version", ""),
                metadata=_db.load_json_object(h.get("metadata")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"no {exc} field" if isinstance(exc, KeyError) else str(exc)
            error = _db.corrupted(self._where(key), f"the header cannot be read ({reason})")
            return SessionInfo(
                id=key,
                created_at=_EPOCH,
                updated_at=_EPOCH,
                message_count=None,
                version=h.get("version", ""),
                error=str(error),
            )

    def _where(self, key: str) -> str:
        return f"{self.location}, session '{key}'"

    def _checked(self, info: SessionInfo) -> SessionInfo:
        """``info``, or ``SessionCorruptedError`` when its header cannot be read."""
        if info.error is not None:
            raise SessionCorruptedError(info.error, path=self._where(info.id))
        return info

    def _headers(self, keys: list[str]) -> list[SessionInfo]:
        """The headers of ``keys`` that exist, in their order (one script call per chunk)."""
        out: list[SessionInfo] = []
        with self._guard():
            for start in range(0, len(keys), LIST_CHUNK):
                batch = keys[start : start + LIST_CHUNK]
                found = self._list_script(keys=[], args=[self._k("h:"), *batch])
                for key, flat in json.loads(found):
                    out.append(self._info(key, dict(zip(flat[::2], flat[1::2], strict=True))))
        return out

    def _decode(self, key: str, rows: list[str]) -> list[Message]:
        return _db.decode_all(rows, self._where(key))

    # -- primitives (see BaseStore) --------------------------------------------------------------

    def _read(self, key: str) -> StoredSession | None:
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(self._k("h:", key))
            pipe.lrange(self._k("m:", key), 0, -1)
            header, rows = pipe.execute()
        if not header:
            return None
        info = self._checked(self._info(key, header))
        messages = self._decode(key, rows)
        info.message_count = len(messages)
        return StoredSession(info, messages)

    def _read_info(self, key: str) -> SessionInfo | None:
        with self._guard():
            header = self._redis.hgetall(self._k("h:", key))
        return self._info(key, header) if header else None

    def _exists(self, key: str) -> bool:
        with self._guard():
            return bool(self._redis.exists(self._k("h:", key)))

    def _list(self, ns: str) -> list[SessionInfo]:
        with self._guard():
            keys = self._redis.zrange(self._index(ns), 0, -1)
        return self._headers(keys)

    def _page(self, ns: str, limit: int, after: tuple[datetime, str] | None) -> list[SessionInfo]:
        """Keyset paging over the namespace's index: (score, key) below ``after``, newest first.
        Members of one score come in reverse key order, as the contract's tie-break wants."""
        index = self._index(ns)
        with self._guard():
            if after is None:
                keys = self._redis.zrevrangebyscore(index, "+inf", "-inf", start=0, num=limit)
            else:
                score = _score(after[0])
                pipe = self._redis.pipeline(transaction=True)
                pipe.zrevrangebyscore(index, score, score)
                pipe.zrevrangebyscore(index, f"({score}", "-inf", start=0, num=limit)
                same, older = pipe.execute()
                keys = [k for k in same if k < after[1]][:limit] + older
        return self._headers(keys[:limit])

    def _transact(self, key: str, fn: Callable[[Writer], T]) -> T:
        """Optimistic: ``fn`` reads through a writer that remembers the version it saw, and each
        write applies only if the session is still at that version, else ``fn`` runs again."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return fn(_RedisWriter(self, key))
            except _Moved:
                if attempt >= 2:  # many writers at once: step aside a little, at random
                    time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
        raise StoreUnavailableError(
            f"Could not write session '{key.rsplit('/', 1)[-1]}' in the Redis session store at "
            f"{self.location}: other writers changed it {WRITE_ATTEMPTS} times in a row while "
            "this write was prepared. Retry; if it persists, fewer processes should write to "
            "one session at a time (use turn_lock)"
        )

    def _run_write(
        self,
        key: str,
        mode: str,
        messages: list[Message],
        *,
        seen: str,
        header: Header | None = None,
        member: str = "",
        token: str | None = None,
    ) -> list[str]:
        """Run the write script: ``[status, value]`` ("ok" with the header JSON (or "1" for a
        trash), "moved" with the current version, "gone" when the trash entry is no more)."""
        encoded = [_db.encode(m) for m in messages]
        ns = _ns_of(key)
        when = header.updated_at if header is not None else utcnow()  # a trash: deleted_at
        created = _db.iso(header.created_at) if header is not None else ""
        title = header.title if header is not None else ""
        meta = json.dumps(header.metadata) if header is not None else ""
        args: list[Any] = [
            mode,
            seen,
            key,
            created,
            _db.iso(when),
            _score(when),
            title,
            meta,
            sum(len(e.encode("utf-8")) for e in encoded),
            member,
            *encoded,
        ]
        assert len(args) - len(encoded) == _FIXED_ARGS
        keys = [
            self._k("h:", key),
            self._k("m:", key),
            self._index(ns),
            self._k("seq"),
            self._k("w:", token or uuid.uuid4().hex),
            self._trash_zset(ns),
            self._k("th:", member),
            self._k("tm:", member),
        ]
        with self._guard():
            return self._write_script(keys=keys, args=args)

    def _trash_entries(self, ns: str, key: str | None) -> list[TrashedSession]:
        with self._guard():
            members = self._redis.zrevrange(self._trash_zset(ns), 0, -1)
            if key is not None:
                members = [m for m in members if m.rpartition(":")[0] == key]
            pipe = self._redis.pipeline(transaction=False)
            for member in members:
                pipe.hmget(self._k("th:", member), "deleted_at", "count", "title")
            rows = pipe.execute() if members else []
        out = []
        for member, (deleted, count, title) in zip(members, rows, strict=True):
            if deleted is None:
                continue
            out.append(
                TrashedSession(
                    member.rpartition(":")[0],
                    _db.from_iso(deleted),
                    int(count or 0),
                    title or "",
                    member,
                )
            )
        out.sort(key=lambda t: t.deleted_at, reverse=True)
        return out

    def _purge(self, entries: list[TrashedSession]) -> None:
        if not entries:
            return
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            for t in entries:
                pipe.delete(self._k("th:", t.key), self._k("tm:", t.key))
                pipe.zrem(self._trash_zset(_ns_of(t.key.rpartition(":")[0])), t.key)
            pipe.execute()

    def _search(self, ns: str, terms: list[list[str]], limit: int) -> list[SearchHit]:
        """A scan of the namespace's sessions, term by term (see the module docstring)."""
        phrases = [[fold(w) for w in phrase] for phrase in terms]
        hits: list[SearchHit] = []
        with self._guard():
            keys = self._redis.zrange(self._index(ns), 0, -1)
            for start in range(0, len(keys), SEARCH_CHUNK):
                batch = keys[start : start + SEARCH_CHUNK]
                pipe = self._redis.pipeline(transaction=False)
                for key in batch:
                    pipe.lrange(self._k("m:", key), 0, -1)
                for key, rows in zip(batch, pipe.execute(), strict=True):
                    for idx, row in enumerate(rows):
                        hit = _match(key, idx, row, phrases)
                        if hit is not None:
                            hits.append(hit)
        hits.sort(key=lambda h: (-h.score, h.session_id, h.index))
        return hits[:limit]

    @contextlib.contextmanager
    def _turn_lock(self, key: str, timeout: float | None, lease: float) -> Iterator[None]:
        """``SET NX PX`` with a random token, polled until ``timeout``; renewed every
        ``lease / 3`` while held, released only by its holder. A killed holder's lock expires
        after ``lease`` seconds."""
        lock, token = self._k("lock:", key), uuid.uuid4().hex
        lease_ms = max(1, int(lease * 1000))
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        pause = 0.01
        while True:
            with self._guard():
                if self._redis.set(lock, token, nx=True, px=lease_ms):
                    break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise busy(key)
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, 0.25)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(lease / 3):
                try:
                    if not self._renew_script(keys=[lock], args=[token, lease_ms]):
                        return  # lost (expired and taken): nothing left to renew
                except Exception:  # noqa: BLE001 - a server away for a moment: try again
                    continue

        renewer = threading.Thread(target=renew, name=f"scratchy-lease-{key}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=1)
            with contextlib.suppress(*self._errors):
                self._release_script(keys=[lock], args=[token])


class _RedisWriter:
    """One session, optimistically (see :class:`~scratchy.stores.base.Writer`): it reads the
    header once, remembers its version, and every write applies only at that version."""

    def __init__(self, store: RedisStore, key: str) -> None:
        self.store, self.key = store, key
        with store._guard():
            self.raw = store._redis.hgetall(store._k("h:", key))
        self.seen = self.raw.get("version", "") if self.raw else ""

    def current(self) -> SessionInfo | None:
        if not self.raw:
            return None
        return self.store._checked(self.store._info(self.key, self.raw))

    def messages(self) -> list[Message]:
        if not self.raw:
            return []
        store = self.store
        with store._guard():
            pipe = store._redis.pipeline(transaction=True)
            pipe.hget(store._k("h:", self.key), "version")
            pipe.lrange(store._k("m:", self.key), 0, -1)
            version, rows = pipe.execute()
        if (version or "") != self.seen:
            raise _Moved
        return store._decode(self.key, rows)

    def _write(self, mode: str, messages: list[Message], **options: Any) -> str:
        status, value = self.store._run_write(self.key, mode, messages, seen=self.seen, **options)
        if status != "ok":
            raise _Moved
        return value

    def _result(self, mode: str, messages: list[Message], **options: Any) -> SessionInfo:
        flat = json.loads(self._write(mode, messages, **options))
        return self.store._info(self.key, dict(zip(flat[::2], flat[1::2], strict=True)))

    def append(self, new: list[Message], header: Header) -> SessionInfo:
        return self._result("append", new, header=header)

    def rewrite(self, messages: list[Message], header: Header) -> SessionInfo:
        return self._result("rewrite", messages, header=header)

    def set_header(self, header: Header) -> SessionInfo:
        return self._result("header", [], header=header)

    def trash(self) -> bool:
        if not self.raw:
            return False
        self._write("trash", [], member=f"{self.key}:{uuid.uuid4().hex[:12]}")
        return True

    def untrash(self, entry: TrashedSession) -> SessionInfo:
        return self._result("untrash", [], member=entry.key)


def _match(key: str, idx: int, row: str, phrases: list[list[str]]) -> SearchHit | None:
    """Score one stored message against the folded query phrases (None when it does not match):
    every phrase must occur as consecutive words, the last one-word phrase as a prefix."""
    if row.isascii() and "\\u" not in row:  # cheap pre-check on the raw JSON before parsing it
        lowered = row.lower()
        if not all(w in lowered for phrase in phrases for w in phrase):
            return None
    try:
        message = json.loads(row)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    text = search_text(message)
    spans = [(m.start(), m.end(), fold(m.group())) for m in _WORD.finditer(text)]
    words = [tok for _, _, tok in spans]
    marked: set[int] = set()
    score = 0.0
    length = len(spans)
    for n, phrase in enumerate(phrases):
        prefix = n == len(phrases) - 1 and len(phrase) == 1
        starts = [
            i
            for i in range(len(words) - len(phrase) + 1)
            if (words[i].startswith(phrase[0]) if prefix else words[i] == phrase[0])
            and words[i + 1 : i + len(phrase)] == phrase[1:]
        ]
        if not starts:
            return None
        for i in starts:
            marked.update(range(i, i + len(phrase)))
        tf = len(starts)
        score += tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / 30))
    return SearchHit(key, idx, str(message.get("role", "")), _snippet(text, spans, marked), score)


def _snippet(text: str, spans: list[tuple[int, int, str]], marked: set[int]) -> str:
    """About twelve words around the first match, matches wrapped in ``[`` ``]``."""
    lo = max(0, min(marked) - 3)
    hi = min(len(spans), lo + 12)
    out = ["…"] if lo > 0 else []
    pos = spans[lo][0]
    for i in range(lo, hi):
        start, end, _ = spans[i]
        out.append(text[pos:start])
        out.append(f"[{text[start:end]}]" if i in marked else text[start:end])
        pos = end
    if hi < len(spans):
        out.append(text[pos : spans[hi][0]].rstrip() + "…")
    return " ".join("".join(out).split())

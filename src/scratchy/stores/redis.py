"""Sessions in Redis: ``redis://host:port/db`` (or ``rediss://`` for TLS).

Query parameters of our own (removed before the URL reaches redis-py): ``prefix`` (key prefix,
default ``scratchy:``) and ``retries`` (reconnection attempts per command, default 8, with
exponential backoff up to one second: a server restart of a few seconds is ridden out).

Keys (shown for the default prefix ``scratchy:``):

* ``scratchy:h:<id>`` a HASH, the header (``created_at``, ``updated_at``, ``title``,
  ``metadata`` JSON, ``count``, ``size``, ``version``), and ``scratchy:m:<id>`` a LIST of the
  messages as JSON, so an append is one ``RPUSH`` of the new messages;
* ``scratchy:index`` a ZSET of live ids scored by ``updated_at``; ``scratchy:seq`` the global
  write counter, whose next value becomes the session's ``version`` on every write;
* the trash: deleting renames both keys to ``scratchy:th:<id>:<n>`` / ``scratchy:tm:<id>:<n>``
  (with ``deleted_at`` in the hash) and scores ``<id>:<n>`` in the ZSET ``scratchy:trash``.

Every write is one Lua script, so it is atomic: ``append`` checks ``expected_count`` and pushes
in one step; ``replace`` rewrites only when the version is still the one its conflict check
(done in Python, against the stored messages) saw, and retries otherwise. Each write carries a
random token recorded (for ten minutes) in ``scratchy:w:<token>``: when redis-py re-sends a
command after a dropped connection, a write that already happened is not applied twice.

Search is a plain scan: every live session's messages are read and matched word by word (case-
and accent-insensitive, the last word as a prefix), ranked by term frequency with a length
penalty. It costs time proportional to all stored messages; RediSearch is not used.

One Redis server (or a primary with replicas) is expected: Redis Cluster is not supported, as
the scripts touch keys of several sessions. Durability is Redis's: with ``appendonly yes`` and
the default ``appendfsync everysec``, a crash of the machine can lose the last second of
writes; a clean restart loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

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

__all__ = ["RedisStore"]

DEFAULT_PREFIX = "scratchy:"
_FIXED_ARGS = 11

_WRITE = """
local done = redis.call('GET', KEYS[5])
if done then return {'ok', done} end
local exists = redis.call('EXISTS', KEYS[1]) == 1
local count, size, title, created = 0, 0, '', ''
if exists then
  count = redis.call('LLEN', KEYS[2])
  size = tonumber(redis.call('HGET', KEYS[1], 'size') or '0')
  title = redis.call('HGET', KEYS[1], 'title') or ''
  created = redis.call('HGET', KEYS[1], 'created_at') or ''
end
if ARGV[1] == 'append' then
  if ARGV[2] ~= '' and count ~= tonumber(ARGV[2]) then return {'conflict', tostring(count)} end
  if title == '' then title = ARGV[7] end
  size = size + tonumber(ARGV[9])
else
  if exists and ARGV[3] ~= '' then
    local version = redis.call('HGET', KEYS[1], 'version')
    if version ~= ARGV[3] then return {'changed', version} end
  end
  if title == '' or ARGV[8] ~= '1' then title = ARGV[7] end
  redis.call('DEL', KEYS[2])
  count, size = 0, tonumber(ARGV[9])
end
for i = 12, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if ARGV[10] ~= '' then created = ARGV[10] end
if created == '' then created = ARGV[4] end
redis.call('HSET', KEYS[1], 'id', ARGV[11], 'created_at', created, 'updated_at', ARGV[4],
  'updated_score', ARGV[5], 'title', title, 'count', count + #ARGV - 11, 'size', size,
  'version', redis.call('INCR', KEYS[4]))
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'metadata', ARGV[6]) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[11])
local header = cjson.encode(redis.call('HGETALL', KEYS[1]))
redis.call('SET', KEYS[5], header, 'EX', 600)
return {'ok', header}
"""

_DELETE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
redis.call('HSET', KEYS[3], 'deleted_at', ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[4])
return 1
"""

_RESTORE = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  if redis.call('HGET', KEYS[3], 'restored_from') == ARGV[1] then
    return {'ok', cjson.encode(redis.call('HGETALL', KEYS[3]))}
  end
  return {'conflict', ''}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[6], ARGV[1])
  return {'gone', ''}
end
redis.call('RENAME', KEYS[1], KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
redis.call('HDEL', KEYS[3], 'deleted_at')
redis.call('HSET', KEYS[3], 'version', redis.call('INCR', KEYS[7]), 'restored_from', ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZADD', KEYS[5], redis.call('HGET', KEYS[3], 'updated_score') or '0', ARGV[2])
return {'ok', cjson.encode(redis.call('HGETALL', KEYS[3]))}
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
LIST_CHUNK = 2000


class RedisStore:
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
        self._delete_script = self._redis.register_script(_DELETE)
        self._restore_script = self._redis.register_script(_RESTORE)
        self._list_script = self._redis.register_script(_LIST)
        self._seen = _db.SeenVersions()
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

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}{name}"

    def close(self) -> None:
        """Close the connections (the store reconnects if used again)."""
        self._redis.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _info(self, session_id: str, h: dict[str, str]) -> SessionInfo:
        return SessionInfo(
            id=session_id,
            created_at=_db.from_iso(h["created_at"]),
            updated_at=_db.from_iso(h["updated_at"]),
            message_count=int(h.get("count", 0)),
            title=h.get("title", ""),
            size=int(h.get("size", 0)),
            version=h.get("version", ""),
            metadata=_db.load_json_object(h.get("metadata")),
        )

    @staticmethod
    def _pairs(encoded: str) -> dict[str, str]:
        flat = json.loads(encoded)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    # -- reading ---------------------------------------------------------------------------------

    def _snapshot(self, session_id: str) -> tuple[dict[str, str], list[str]] | None:
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(self._key("h:", session_id))
            pipe.lrange(self._key("m:", session_id), 0, -1)
            header, rows = pipe.execute()
        return (header, rows) if header else None

    def load(self, session_id: str) -> StoredSession | None:
        """The session, or None when it does not exist."""
        validate_session_id(session_id)
        snap = self._snapshot(session_id)
        if snap is None:
            return None
        header, rows = snap
        messages = _db.decode_all(rows, f"{self.location}, session '{session_id}'")
        info = self._info(session_id, header)
        info.message_count = len(messages)
        self._seen.set(session_id, info.version)
        return StoredSession(info, messages)

    def info(self, session_id: str) -> SessionInfo | None:
        """The session's header, or None when it does not exist."""
        validate_session_id(session_id)
        with self._guard():
            header = self._redis.hgetall(self._key("h:", session_id))
        return self._info(session_id, header) if header else None

    def exists(self, session_id: str) -> bool:
        """True when the session exists."""
        validate_session_id(session_id)
        with self._guard():
            return bool(self._redis.exists(self._key("h:", session_id)))

    def list(self) -> list[SessionInfo]:
        """Every session's header, newest activity first (read 2,000 at a time)."""
        out: list[SessionInfo] = []
        with self._guard():
            ids = self._redis.zrange(self._key("index"), 0, -1)
            for start in range(0, len(ids), LIST_CHUNK):
                batch = ids[start : start + LIST_CHUNK]
                found = self._list_script(keys=[], args=[self._key("h:"), *batch])
                for sid, flat in json.loads(found):
                    h = dict(zip(flat[::2], flat[1::2], strict=True))
                    out.append(self._info(sid, h))
        out.sort(key=lambda i: (i.updated_at, int(i.version or 0)), reverse=True)
        return out

    # -- writing ---------------------------------------------------------------------------------

    def _run_write(
        self,
        session_id: str,
        mode: str,
        new: list[Message],
        *,
        title: str,
        keep_title: bool = True,
        expected_count: int | None = None,
        expected_version: str = "",
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        token: str,
    ) -> list[str]:
        encoded = [_db.encode(m) for m in new]
        now = utcnow()
        args: list[Any] = [
            mode,
            "" if expected_count is None else expected_count,
            expected_version,
            _db.iso(now),
            repr(now.timestamp()),
            "" if metadata is None else json.dumps(metadata),
            title,
            "1" if keep_title else "0",
            sum(len(e.encode("utf-8")) for e in encoded),
            "" if created_at is None else _db.iso(created_at),
            session_id,
            *encoded,
        ]
        assert len(args) - len(encoded) == _FIXED_ARGS
        keys = [
            self._key("h:", session_id),
            self._key("m:", session_id),
            self._key("index"),
            self._key("seq"),
            self._key("w:", token),
        ]
        with self._guard():
            return self._write_script(keys=keys, args=args)

    def _done(self, session_id: str, encoded: str) -> SessionInfo:
        info = self._info(session_id, self._pairs(encoded))
        self._seen.set(session_id, info.version)
        return info

    def append(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Add ``messages`` at the end atomically (creates the session)."""
        validate_session_id(session_id)
        new = validate_messages(messages)
        status, value = self._run_write(
            session_id,
            "append",
            new,
            title=make_title(new),
            expected_count=expected_count,
            metadata=metadata,
            token=uuid.uuid4().hex,
        )
        if status == "conflict":
            assert expected_count is not None
            raise _db.count_conflict(session_id, expected_count, int(value))
        return self._done(session_id, value)

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

        ``created_at`` overrides the creation time, for copies between stores.
        """
        validate_session_id(session_id)
        new = validate_messages(messages)
        seen = None if force else self._seen.get(session_id)
        expected = seen or ""
        token = uuid.uuid4().hex
        while True:
            status, value = self._run_write(
                session_id,
                "replace",
                new,
                title=_db.replace_title("", new),
                keep_title=any(m.get("role") == "user" for m in new),
                expected_version=expected,
                metadata=metadata,
                created_at=_db.to_utc(created_at),
                token=token,
            )
            if status == "ok":
                return self._done(session_id, value)
            snap = self._snapshot(session_id)  # changed since seen: check it only grew
            if snap is None:
                expected = ""
                continue
            header, rows = snap
            stored = _db.decode_all(rows, f"{self.location}, session '{session_id}'")
            if stored != new[: len(stored)]:
                raise _db.replace_conflict(session_id, len(new), len(stored))
            expected = header.get("version", "")

    # -- trash -----------------------------------------------------------------------------------

    def delete(self, session_id: str) -> bool:
        """Move the session to the trash; False when it did not exist."""
        validate_session_id(session_id)
        now = utcnow()
        tkey = f"{session_id}:{uuid.uuid4().hex[:12]}"
        keys = [
            self._key("h:", session_id),
            self._key("m:", session_id),
            self._key("th:", tkey),
            self._key("tm:", tkey),
            self._key("index"),
            self._key("trash"),
        ]
        with self._guard():
            done = self._delete_script(
                keys=keys, args=[session_id, _db.iso(now), repr(now.timestamp()), tkey]
            )
        self._seen.forget(session_id)
        return bool(done)

    def _trash(self, session_id: str | None = None) -> list[TrashedSession]:
        with self._guard():
            keys = self._redis.zrevrange(self._key("trash"), 0, -1)
            if session_id is not None:
                keys = [k for k in keys if k.rpartition(":")[0] == session_id]
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._key("th:", key), "deleted_at", "count", "title")
            rows = pipe.execute() if keys else []
        out = []
        for key, (deleted, count, title) in zip(keys, rows, strict=True):
            if deleted is None:
                continue
            sid = key.rpartition(":")[0]
            out.append(
                TrashedSession(sid, _db.from_iso(deleted), int(count or 0), title or "", key)
            )
        out.sort(key=lambda t: t.deleted_at, reverse=True)
        return out

    def list_trash(self) -> list[TrashedSession]:
        """Deleted sessions, most recently deleted first."""
        return self._trash()

    def restore(self, session_id: str) -> SessionInfo:
        """Bring back the most recently deleted ``session_id``."""
        validate_session_id(session_id)
        while True:
            entries = self._trash(session_id)
            if not entries:
                raise _db.not_in_trash(session_id)
            tkey = entries[0].key
            keys = [
                self._key("th:", tkey),
                self._key("tm:", tkey),
                self._key("h:", session_id),
                self._key("m:", session_id),
                self._key("index"),
                self._key("trash"),
                self._key("seq"),
            ]
            with self._guard():
                status, value = self._restore_script(keys=keys, args=[tkey, session_id])
            if status == "conflict":
                raise _db.restore_conflict(session_id)
            if status == "ok":
                return self._done(session_id, value)
            # "gone": purged or restored by another process meanwhile: look again

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Delete trashed sessions for good (one id's, older ones, or all); returns them."""
        if session_id is not None:
            validate_session_id(session_id)
        cutoff = utcnow() - older_than if older_than is not None else None
        entries = [t for t in self._trash(session_id) if cutoff is None or t.deleted_at <= cutoff]
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            for t in entries:
                pipe.delete(self._key("th:", t.key), self._key("tm:", t.key))
                pipe.zrem(self._key("trash"), t.key)
            if entries:
                pipe.execute()
        return entries

    # -- search ----------------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Messages of live sessions containing every word of ``query`` (the last as a
        prefix), case- and accent-insensitive; most occurrences (per length) first."""
        words = [_db.fold(w) for w in _db.query_words(query)]
        if not words or limit <= 0:
            return []
        hits: list[SearchHit] = []
        with self._guard():
            ids = self._redis.zrange(self._key("index"), 0, -1)
            for start in range(0, len(ids), 100):
                batch = ids[start : start + 100]
                pipe = self._redis.pipeline(transaction=False)
                for sid in batch:
                    pipe.lrange(self._key("m:", sid), 0, -1)
                for sid, rows in zip(batch, pipe.execute(), strict=True):
                    for idx, row in enumerate(rows):
                        hit = _match(sid, idx, row, words)
                        if hit is not None:
                            hits.append(hit)
        hits.sort(key=lambda h: (-h.score, h.session_id, h.index))
        return hits[:limit]


def _match(session_id: str, idx: int, row: str, words: list[str]) -> SearchHit | None:
    """Score one stored message against the folded query words (None when it does not match)."""
    if row.isascii():  # cheap pre-check on the raw JSON before parsing it
        lowered = row.lower()
        if not all(w in lowered for w in words):
            return None
    try:
        message = json.loads(row)
    except ValueError:
        return None
    text = _db.search_text(message)
    spans = [(m.start(), m.end(), _db.fold(m.group())) for m in _db.WORD.finditer(text)]
    *whole, last = words
    matched = [i for i, (_, _, tok) in enumerate(spans) if tok in whole or tok.startswith(last)]
    found = {spans[i][2] for i in matched}
    if not all(w in found for w in whole) or not any(t.startswith(last) for t in found):
        return None
    length = len(spans)
    score = 0.0
    for w in words:
        tf = sum(1 for _, _, tok in spans if tok == w or (w == last and tok.startswith(w)))
        score += tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / 30))
    return SearchHit(
        session_id, idx, str(message.get("role", "")), _snippet(text, spans, matched), score
    )


def _snippet(text: str, spans: list[tuple[int, int, str]], matched: list[int]) -> str:
    """About twelve words around the first match, matches wrapped in ``[`` ``]``."""
    first = matched[0]
    lo = max(0, first - 3)
    hi = min(len(spans), lo + 12)
    marks = set(matched)
    out = ["…"] if lo > 0 else []
    pos = spans[lo][0]
    for i in range(lo, hi):
        start, end, _ = spans[i]
        out.append(text[pos:start])
        out.append(f"[{text[start:end]}]" if i in marks else text[start:end])
        pos = end
    if hi < len(spans):
        out.append(text[pos : spans[hi][0]].rstrip() + "…")
    return " ".join("".join(out).split())

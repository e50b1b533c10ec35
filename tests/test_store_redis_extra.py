"""Redis-only details of the store: optimistic writes, re-sent scripts, per-owner indexes,
keyset paging on equal times, phrase search and leased turn locks (on a real redis-server)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from scratchy.errors import SessionBusyError, SessionCorruptedError
from scratchy.stores import base
from scratchy.stores.base import Header
from scratchy.stores.redis import RedisStore
from tests.test_store_contract import drop_redis_prefix


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    tag = f"rx-{uuid.uuid4().hex[:8]}:"
    yield tag
    drop_redis_prefix(redis_url, tag)


@pytest.fixture
def make(redis_url: str, prefix: str) -> Iterator[Any]:
    opened: list[RedisStore] = []

    def make() -> RedisStore:
        store = RedisStore(f"{redis_url}?prefix={prefix}")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_resent_write_is_applied_once(make: Any, prefix: str) -> None:
    store = make()
    now = base.utcnow()
    header = Header("once", now, now, {})
    msg = [user("once")]
    first = store._run_write("s", "append", msg, seen="", header=header, token="tok1")
    again = store._run_write("s", "append", msg, seen="", header=header, token="tok1")
    assert first == again and first[0] == "ok"
    store.append("s", msg)
    assert store.info("s").message_count == 2  # type: ignore[union-attr]
    store._redis.lset(f"{prefix}m:s", 1, "{broken")
    with pytest.raises(SessionCorruptedError, match="message 1"):
        store.load("s")


def test_a_write_at_an_old_version_changes_nothing(make: Any) -> None:
    store = make()
    old = store.append("s", [user("a")]).version
    store.append("s", [user("b")])
    now = base.utcnow()
    status, current = store._run_write(
        "s", "rewrite", [user("lost")], seen=old, header=Header("x", now, now, {})
    )
    assert status == "moved" and current == store.info("s").version  # type: ignore[union-attr]
    assert store.load("s").messages == [user("a"), user("b")]  # type: ignore[union-attr]


def test_a_write_raced_by_another_is_worked_out_again(make: Any) -> None:
    store, other = make(), make()
    store.append("s", [user("a")], usage={"input_tokens": 1})
    calls = 0

    def write(w: Any) -> Any:
        nonlocal calls
        calls += 1
        cur = w.current()
        if calls == 1:  # another process writes between our read and our write
            other.append("s", [user("theirs")], usage={"input_tokens": 5})
        usage = dict(cur.metadata["usage"])  # what the base does: totals from what was read
        usage["input_tokens"] += 2
        header = Header(cur.title, cur.created_at, base.utcnow(), {"usage": usage})
        return w.append([user("mine")], header)

    info = store._transact("s", write)
    assert calls == 2 and info.message_count == 3
    assert info.metadata["usage"] == {"input_tokens": 8}
    assert [m["content"] for m in store.load("s").messages] == ["a", "theirs", "mine"]  # type: ignore[union-attr]


def test_usage_totals_add_up_across_threads(make: Any) -> None:
    stores = [make() for _ in range(4)]

    def work(store: RedisStore) -> None:
        for i in range(25):
            store.append("u", [user(str(i))], usage={"input_tokens": 3, "output_tokens": 1})

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = stores[0].info("u")
    assert info is not None and info.message_count == 100
    assert info.metadata["usage"] == {"input_tokens": 300, "output_tokens": 100}


def test_each_namespace_has_its_own_index(make: Any, prefix: str) -> None:
    store = make()
    alice = store.scoped("alice")
    team = alice.scoped("team")
    store.append("notes", [user("root")])
    alice.append("notes", [user("alice")])
    team.append("notes", [user("team")])
    r = store._redis
    assert r.zrange(f"{prefix}index", 0, -1) == ["notes"]
    assert r.zrange(f"{prefix}index:alice/", 0, -1) == ["alice/notes"]
    assert r.zrange(f"{prefix}index:alice/team/", 0, -1) == ["alice/team/notes"]
    assert [i.id for i in team.list()] == ["notes"]
    assert [h.session_id for h in alice.search("alice")] == ["notes"]
    assert team.search("alice") == [] and alice.search("team") == []
    assert alice.delete("notes")
    assert r.zrange(f"{prefix}index:alice/", 0, -1) == []
    assert len(r.zrange(f"{prefix}trash:alice/", 0, -1)) == 1
    assert [t.id for t in alice.list_trash()] == ["notes"] and store.list_trash() == []
    assert alice.restore("notes").message_count == 1
    assert [i.id for i in alice.list_page(limit=5).items] == ["notes"]


def test_pages_break_ties_of_equal_times_by_id(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make()
    fixed = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    monkeypatch.setattr(base, "utcnow", lambda: fixed)
    ids = [f"s{i:02d}" for i in range(11)]
    for sid in ids:
        store.append(sid, [user(sid)])
    monkeypatch.undo()
    store.append("newest", [user("x")])
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_page(limit=3, cursor=cursor)
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["newest", *sorted(ids, reverse=True)]
    assert seen == [i.id for i in store.list()]


def test_search_phrases_prefixes_and_accents(make: Any) -> None:
    store = make()
    store.append("a", [user("The big snake sleeps. Déjà vu, CRÈME brûlée!")])
    store.append("b", [user("snake big")])
    hits = store._search("", [["big", "snake"]], 10)
    assert [(h.session_id, h.index) for h in hits] == [("a", 0)]
    assert "[big] [snake]" in hits[0].snippet
    assert [h.session_id for h in store.search("creme brul")] == ["a"]
    assert [h.session_id for h in store.search("deja")] == ["a"]
    assert store.search("brul creme") == []  # only the last word is a prefix
    assert {h.session_id for h in store.search("SNAKE")} == {"a", "b"}


def test_turn_lock_lease_is_renewed_while_held(make: Any) -> None:
    store, other = make(), make()
    with store.turn_lock("s", timeout=0, lease=0.3):
        time.sleep(1.0)  # three leases: still held thanks to the renewals
        with pytest.raises(SessionBusyError):
            with other.turn_lock("s", timeout=0.1):
                pass
    with other.turn_lock("s", timeout=0):
        pass


def test_turn_lock_busy_names_the_id_without_its_owner(make: Any) -> None:
    alice, again = make().scoped("alice"), make().scoped("alice")
    with alice.turn_lock("s", timeout=0):
        with pytest.raises(SessionBusyError) as err:
            with again.turn_lock("s", timeout=0):
                pass
    assert err.value.session_id == "s" and "'s'" in str(err.value)


HOLDER = """
import sys, time
from scratchy.stores.redis import RedisStore
store = RedisStore(sys.argv[1])
with store.turn_lock("s", timeout=0, lease=float(sys.argv[2])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holders_lock_expires_after_its_lease(
    make: Any, redis_url: str, prefix: str
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{redis_url}?prefix={prefix}", "0.6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        store = make()
        with pytest.raises(SessionBusyError):
            with store.turn_lock("s", timeout=0):
                pass
    finally:
        proc.kill()
        proc.wait()
    start = time.monotonic()
    with store.turn_lock("s", timeout=5):
        waited = time.monotonic() - start
    assert waited < 2

"""One contract for every session store: TOON files, SQLite, Redis and PostgreSQL.

Every test runs against each backend, on real servers (``tests/servers.py``). A second store
instance on the same backend plays "another process" where the contract talks about one.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scratchy.errors import InvalidSessionIdError, SessionConflictError, SessionNotFoundError
from scratchy.stores.base import SessionStore

BACKENDS = ["toon", "sqlite", "redis", "postgres"]


@dataclass
class Backend:
    """A fresh, empty store location of one kind, and a way to open more instances on it."""

    name: str
    location: str
    """Directory or URL, as ``SessionManager`` and ``open_store`` take it."""
    opened: list[Any] = field(default_factory=list)

    def make(self) -> SessionStore:
        """A new store instance (its own connections and conflict bookkeeping)."""
        if self.name == "toon":
            from scratchy.stores.toon_files import TOONFileStore

            store: Any = TOONFileStore(self.location)
        else:
            from scratchy.stores import store_for_url

            store = store_for_url(self.location)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            close = getattr(store, "close", None)
            if close is not None:
                close()


def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def drop_pg_schema(url: str, schema: str) -> None:
    """Drop a PostgreSQL schema and everything in it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh location of backend ``name`` for one test; removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    if name == "toon":
        yield Backend(name, str(tmp_path / "sessions"))
    elif name == "sqlite":
        yield Backend(name, f"sqlite:///{tmp_path}/sessions.db")
    elif name == "redis":
        url = request.getfixturevalue("redis_url")
        backend = Backend(name, f"{url}?prefix=test-{tag}:")
        yield backend
        backend.close()
        drop_redis_prefix(url, f"test-{tag}:")
    else:
        url = request.getfixturevalue("postgres_url")
        backend = Backend(name, f"{url}?schema=test_{tag}&pool_size=2")
        yield backend
        backend.close()
        drop_pg_schema(url, f"test_{tag}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, empty."""
    yield from open_backend(request.param, request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> SessionStore:
    """A store instance on the test's backend."""
    return backend.make()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


TRICKY: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful AI assistant."},
    user("Héllo wörld — ünïcode ✓ 🐍 日本語 עברית ÅÅ (A\u030a) e\u0301"),
    user("quotes \" ' and \\ backslashes, tabs\tand\nnew\r\nlines, NUL \x00 here"),
    user("  leading and trailing spaces  "),
    user(""),
    user("true"),
    user("null"),
    user("123"),
    user("[1, 2]"),
    user("- a list item\nkey: value\n  indented: 1"),
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "a \\"b\\".py"}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "read_file", "content": "x = 1\n" * 50},
    {"role": "tool", "tool_call_id": "call_2", "content": ""},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "look at this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    },
    {"role": "assistant", "content": "done", "reasoning": {"steps": [1, 2.5, None, True]}},
    bot("x" * 20_000),
]


# -- basics ------------------------------------------------------------------------------------


def test_round_trip_of_tricky_messages(backend: Backend, store: SessionStore) -> None:
    info = store.replace("tricky", TRICKY)
    assert info.message_count == len(TRICKY)
    loaded = store.load("tricky")
    assert loaded is not None
    assert loaded.messages == TRICKY
    fresh = backend.make().load("tricky")
    assert fresh is not None and fresh.messages == TRICKY
    store.append("tricky", TRICKY[1:4])
    again = backend.make().load("tricky")
    assert again is not None and again.messages == TRICKY + TRICKY[1:4]


def test_missing_session(store: SessionStore) -> None:
    assert store.load("nope") is None
    assert store.info("nope") is None
    assert store.exists("nope") is False
    assert store.delete("nope") is False
    assert store.list() == []


def test_exists(store: SessionStore) -> None:
    store.append("s1", [user("hi")])
    assert store.exists("s1")
    assert not store.exists("s2")
    store.append("empty", [])
    assert store.exists("empty")
    assert store.info("empty").message_count == 0  # type: ignore[union-attr]
    assert store.load("empty").messages == []  # type: ignore[union-attr]


def test_append_creates_and_extends(backend: Backend, store: SessionStore) -> None:
    info = store.append("s", [user("one"), bot("two")])
    assert info.message_count == 2
    info = store.append("s", [user("three")])
    assert info.message_count == 3
    other = backend.make()
    info = other.append("s", [bot("four")])
    assert info.message_count == 4
    loaded = store.load("s")
    assert loaded is not None
    assert [m["content"] for m in loaded.messages] == ["one", "two", "three", "four"]
    assert loaded.info.message_count == 4


def test_append_with_expected_count(store: SessionStore) -> None:
    store.append("s", [user("a")], expected_count=0)
    store.append("s", [bot("b")], expected_count=1)
    with pytest.raises(SessionConflictError) as err:
        store.append("s", [user("c")], expected_count=1)
    assert err.value.expected == 1 and err.value.actual == 2
    with pytest.raises(SessionConflictError):
        store.append("new", [user("c")], expected_count=3)
    assert not store.exists("new")
    assert store.info("s").message_count == 2  # type: ignore[union-attr]


# -- replace and conflicts ---------------------------------------------------------------------


def test_replace_refuses_to_drop_what_another_process_added(
    backend: Backend, store: SessionStore
) -> None:
    base = [user("q1"), bot("a1")]
    version = store.replace("s", base).version
    other = backend.make()
    other.append("s", [user("from the other process")])
    store.load("s")  # a read by anyone changes nothing: the caller names its version
    other.load("s")
    store.search("q1")
    with pytest.raises(SessionConflictError) as err:
        store.replace("s", [*base, user("mine")], expected_version=version)
    assert err.value.expected_version == version
    assert err.value.actual_version == store.info("s").version  # type: ignore[union-attr]
    assert version in str(err.value) and err.value.actual_version in str(err.value)
    with pytest.raises(SessionConflictError):  # retrying the same save is refused again
        store.replace("s", [*base, user("mine")], expected_version=version)
    assert store.load("s").messages == [*base, user("from the other process")]  # type: ignore[union-attr]


def test_replace_that_extends_the_newer_version_is_allowed(
    backend: Backend, store: SessionStore
) -> None:
    version = store.replace("s", [user("q1")]).version
    backend.make().append("s", [bot("a1")])
    info = store.replace("s", [user("q1"), bot("a1"), user("q2")], expected_version=version)
    assert info.message_count == 3


def test_replace_with_the_current_version_and_force(backend: Backend, store: SessionStore) -> None:
    version = store.replace("s", [user("q1")]).version
    other = backend.make()
    other.append("s", [bot("theirs")])
    with pytest.raises(SessionConflictError):
        store.replace("s", [user("rewritten")], expected_version=version)
    info = store.replace("s", [user("rewritten")], expected_version=version, force=True)
    assert info.message_count == 1
    assert other.load("s").messages == [user("rewritten")]  # type: ignore[union-attr]
    other.append("s", [bot("more")])
    current = store.load("s").info.version  # type: ignore[union-attr]
    assert store.replace("s", [user("short")], expected_version=current).message_count == 1


def test_expected_version_of_an_absent_session(store: SessionStore) -> None:
    info = store.replace("s", [user("first")], expected_version="")
    with pytest.raises(SessionConflictError):
        store.replace("s", [user("again")], expected_version="")
    with pytest.raises(SessionConflictError):
        store.append("s", [user("again")], expected_version="")
    store.delete("s")
    with pytest.raises(SessionConflictError):
        store.replace("s", [user("back")], expected_version=info.version)
    assert not store.exists("s")


def test_append_with_expected_version(backend: Backend, store: SessionStore) -> None:
    v1 = store.append("s", [user("a")]).version
    v2 = store.append("s", [bot("b")], expected_version=v1).version
    assert v2 != v1
    backend.make().append("s", [user("other")])
    with pytest.raises(SessionConflictError):
        store.append("s", [bot("c")], expected_version=v2)
    assert store.info("s").message_count == 3  # type: ignore[union-attr]


def test_replace_without_a_version_overwrites(backend: Backend, store: SessionStore) -> None:
    store.replace("s", [user("one"), bot("two")])
    assert backend.make().replace("s", [user("other")]).message_count == 1
    assert store.load("s").messages == [user("other")]  # type: ignore[union-attr]


def test_replace_rewrites_the_middle(store: SessionStore) -> None:
    store.replace("s", [user("a"), bot("b"), user("c"), bot("d")])
    store.replace("s", [user("a"), bot("B"), user("c")])
    loaded = store.load("s")
    assert loaded is not None and loaded.messages == [user("a"), bot("B"), user("c")]
    assert loaded.info.message_count == 3
    store.replace("s", [])
    assert store.load("s").messages == []  # type: ignore[union-attr]


# -- header ------------------------------------------------------------------------------------


def test_times_and_version(store: SessionStore) -> None:
    first = store.append("s", [user("hi")])
    assert first.created_at.utcoffset() == timedelta(0)
    assert first.updated_at.utcoffset() == timedelta(0)
    versions = {first.version}
    time.sleep(0.01)
    second = store.replace("s", [user("hi"), bot("hello")])
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    versions.add(second.version)
    time.sleep(0.01)
    third = store.append("s", [user("again")])
    assert third.created_at == first.created_at and third.updated_at > second.updated_at
    versions.add(third.version)
    versions.add(store.append("s", []).version)
    assert len(versions) == 4 and "" not in versions
    info = store.info("s")
    assert info is not None and info.version == store.load("s").info.version  # type: ignore[union-attr]
    assert info.created_at == first.created_at


def test_title_from_first_user_message(store: SessionStore) -> None:
    info = store.append("s", [{"role": "system", "content": "sys"}])
    assert info.title == ""
    info = store.append("s", [user("How do I\n  read   a file?"), bot("like this")])
    assert info.title == "How do I read a file?"
    assert store.append("s", [user("second question")]).title == "How do I read a file?"
    long = store.append("long", [user("word " * 40)]).title
    assert len(long) == 60 and long.endswith("…")
    assert store.replace("s", [bot("no user left")]).title == ""
    assert store.replace("s", [user("new start")]).title == "new start"
    assert store.info("s").title == "new start"  # type: ignore[union-attr]


def test_metadata_is_stored(backend: Backend, store: SessionStore) -> None:
    meta = {"model": "fake:1", "usage": {"input_tokens": 3, "output_tokens": 5}, "tags": ["x"]}
    store.append("s", [user("hi")], metadata=meta)
    assert store.info("s").metadata == meta  # type: ignore[union-attr]
    store.append("s", [bot("hello")])  # None keeps it
    assert backend.make().load("s").info.metadata == meta  # type: ignore[union-attr]
    store.replace("s", [user("hi")], metadata={"model": "other"})
    # usage totals are the store's: kept when metadata is replaced, added to by ``usage=``
    assert store.info("s").metadata == {  # type: ignore[union-attr]
        "model": "other",
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }
    store.append("s", [bot("x")], usage={"input_tokens": 10, "output_tokens": 1})
    assert store.info("s").metadata["usage"] == {"input_tokens": 13, "output_tokens": 6}  # type: ignore[union-attr]


def test_list_fields_and_newest_first(store: SessionStore) -> None:
    store.append("alpha", [user("first session"), bot("ok")])
    time.sleep(0.005)
    store.append("beta", [user("second")])
    time.sleep(0.005)
    store.append("gamma", [])
    time.sleep(0.005)
    store.append("alpha", [user("more")])
    infos = store.list()
    assert [i.id for i in infos] == ["alpha", "gamma", "beta"]
    alpha = infos[0]
    assert alpha.message_count == 3 and alpha.title == "first session"
    assert alpha.error is None and alpha.version
    assert alpha.created_at < alpha.updated_at
    assert alpha.updated_at.utcoffset() == timedelta(0)
    row = alpha.as_dict()
    assert row["id"] == "alpha" and row["message_count"] == 3 and not row["corrupted"]
    assert [i.message_count for i in infos] == [3, 0, 1]


# -- trash -------------------------------------------------------------------------------------


def test_delete_trash_restore(backend: Backend, store: SessionStore) -> None:
    msgs = [user("keep me"), bot("sure")]
    store.append("s", msgs)
    store.append("other", [user("x")])
    assert store.delete("s") is True
    assert not store.exists("s") and store.load("s") is None and store.info("s") is None
    assert [i.id for i in store.list()] == ["other"]
    assert store.delete("s") is False
    trash = backend.make().list_trash()
    assert [(t.id, t.message_count, t.title) for t in trash] == [("s", 2, "keep me")]
    assert trash[0].deleted_at.utcoffset() is not None and trash[0].key
    info = store.restore("s")
    assert info.message_count == 2
    assert store.load("s").messages == msgs  # type: ignore[union-attr]
    assert store.list_trash() == []
    assert {i.id for i in store.list()} == {"s", "other"}
    store.append("s", [user("after restore")])
    assert store.info("s").message_count == 3  # type: ignore[union-attr]


def test_restore_conflict_and_unknown(store: SessionStore) -> None:
    store.append("s", [user("old")])
    store.delete("s")
    store.append("s", [user("new")])
    with pytest.raises(SessionConflictError):
        store.restore("s")
    assert store.load("s").messages == [user("new")]  # type: ignore[union-attr]
    with pytest.raises(SessionNotFoundError):
        store.restore("unknown")


def test_restore_brings_back_the_latest_deletion(store: SessionStore) -> None:
    store.append("s", [user("v1")])
    store.delete("s")
    time.sleep(0.005)
    store.append("s", [user("v2"), bot("two")])
    store.delete("s")
    trash = store.list_trash()
    assert [(t.id, t.message_count) for t in trash] == [("s", 2), ("s", 1)]
    assert trash[0].deleted_at >= trash[1].deleted_at
    store.restore("s")
    assert store.load("s").messages == [user("v2"), bot("two")]  # type: ignore[union-attr]
    assert [t.message_count for t in store.list_trash()] == [1]


def test_purge(store: SessionStore) -> None:
    for sid in ("a", "b", "c"):
        store.append(sid, [user(sid)])
    store.delete("a")
    time.sleep(0.3)
    store.delete("b")
    store.delete("c")
    assert store.purge(older_than=timedelta(hours=1)) == []
    old = store.purge(older_than=timedelta(seconds=0.15))
    assert [t.id for t in old] == ["a"]
    assert [t.id for t in store.purge("b")] == ["b"]
    assert store.purge("b") == []
    assert [t.id for t in store.list_trash()] == ["c"]
    assert [t.id for t in store.purge()] == ["c"]
    assert store.list_trash() == []
    with pytest.raises(SessionNotFoundError):
        store.restore("c")


# -- search ------------------------------------------------------------------------------------


def test_search_ranking_snippets_and_limit(store: SessionStore) -> None:
    store.append(
        "notes",
        [
            user("Tell me about snakes and lizards and other reptiles in the garden today"),
            bot("The python is a big snake. Python python python: pythons are constrictors."),
            user("And the Python programming language?"),
        ],
    )
    store.append("other", [user("nothing relevant here"), bot("a python appears once here")])
    store.append("gone", [user("python python python python python")])
    store.delete("gone")
    hits = store.search("python")
    assert {(h.session_id, h.index) for h in hits} == {("notes", 1), ("notes", 2), ("other", 1)}
    assert (hits[0].session_id, hits[0].index) == ("notes", 1)
    assert hits[0].role == "assistant"
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    for hit in hits:
        assert "[" in hit.snippet and "]" in hit.snippet
        assert "[python" in hit.snippet.lower()
    assert len(store.search("python", limit=2)) == 2
    assert store.search("python", limit=0) == []
    both = store.search("programming python")
    assert [(h.session_id, h.index) for h in both] == [("notes", 2)]
    assert [(h.session_id, h.index) for h in store.search("constrict")] == [("notes", 1)]
    assert store.search("PYTHON LANGUAGE")[0].index == 2
    assert store.search("") == [] and store.search("  !? ") == []
    assert store.search("zebra") == []


def test_search_sees_appends_and_rewrites(store: SessionStore) -> None:
    store.append("s", [user("first message about kangaroos")])
    assert [h.index for h in store.search("kangaroos")] == [0]
    store.append("s", [bot("kangaroos again")])
    assert {h.index for h in store.search("kangaroos")} == {0, 1}
    store.replace("s", [user("now about wombats")])
    assert store.search("kangaroos") == []
    assert [h.index for h in store.search("wombats")] == [0]


def test_search_finds_tool_calls(store: SessionStore) -> None:
    store.append("s", TRICKY[10:12])
    hits = store.search("read_file")
    assert hits and hits[0].index == 0


def test_search_finds_chinese_and_japanese_words(store: SessionStore) -> None:
    store.append("zh", [user("我喜欢猫和狗")])
    store.append("ja", [user("東京は大きい都市です")])
    store.append("en", [user("plain words only")])
    hits = store.search("猫")
    assert [(h.session_id, h.index) for h in hits] == [("zh", 0)]
    assert "[猫]" in hits[0].snippet and " " not in hits[0].snippet.replace("[猫]", "")
    assert [h.session_id for h in store.search("都市")] == ["ja"]
    assert store.search("市都") == []  # a phrase, not two loose characters
    assert [h.session_id for h in store.search("words")] == ["en"]


# -- paging, owners, headers, fork, turn locks ------------------------------------------------


def test_list_page_walks_every_session_once_newest_first(store: SessionStore) -> None:
    ids = [f"s{i:02d}" for i in range(23)]
    for sid in ids:
        store.append(sid, [user(sid)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_page(limit=5, cursor=cursor)
        pages += 1
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 5 and sorted(seen) == ids and len(seen) == len(set(seen))
    assert seen == [i.id for i in store.list()]
    store.append("s00", [bot("now the newest")])
    assert store.list_page(limit=1).items[0].id == "s00"
    from scratchy.errors import UsageError

    with pytest.raises(UsageError):
        store.list_page(limit=5, cursor="not-a-cursor!")
    with pytest.raises(UsageError):
        store.list_page(limit=0)


def test_owners_see_only_their_own_sessions(store: SessionStore) -> None:
    alice, bob = store.scoped("alice"), store.scoped("bob")
    alice.append("notes", [user("alice's secret plan")])
    bob.append("notes", [user("bob's shopping list")])
    store.append("notes", [user("the local user's notes")])
    assert alice.load("notes").messages == [user("alice's secret plan")]  # type: ignore[union-attr]
    assert bob.load("notes").messages == [user("bob's shopping list")]  # type: ignore[union-attr]
    assert [i.id for i in alice.list()] == ["notes"]
    assert [i.id for i in store.list()] == ["notes"]
    assert [i.id for i in alice.list_page(limit=10).items] == ["notes"]
    assert [h.session_id for h in alice.search("secret")] == ["notes"]
    assert bob.search("secret") == [] and store.search("secret") == []
    assert alice.delete("notes") and not alice.exists("notes") and bob.exists("notes")
    assert [t.id for t in alice.list_trash()] == ["notes"] and bob.list_trash() == []
    assert alice.restore("notes").id == "notes"


def test_update_header_changes_title_and_metadata_only(store: SessionStore) -> None:
    store.append("s", [user("hello")], usage={"input_tokens": 2, "output_tokens": 1})
    info = store.update_header("s", title="  My   project ", metadata={"tag": "x"})
    assert info.title == "My project" and info.message_count == 1
    assert info.metadata == {"tag": "x", "usage": {"input_tokens": 2, "output_tokens": 1}}
    assert store.load("s").messages == [user("hello")]  # type: ignore[union-attr]
    with pytest.raises(SessionNotFoundError):
        store.update_header("missing", title="x")


def test_fork_copies_a_prefix_to_a_new_session(store: SessionStore) -> None:
    store.append("src", [user("a"), bot("b"), user("c"), bot("d")])
    info = store.fork("src", "copy", at=2)
    assert info.message_count == 2 and info.metadata["forked_from"] == {"id": "src", "messages": 2}
    with pytest.raises(SessionConflictError):
        store.fork("src", "copy")
    with pytest.raises(SessionNotFoundError):
        store.fork("missing", "x")


def test_turn_lock_admits_one_holder(backend: Backend, store: SessionStore) -> None:
    from scratchy.errors import SessionBusyError

    other = backend.make()
    with store.turn_lock("s", timeout=0):
        with pytest.raises(SessionBusyError):
            with other.turn_lock("s", timeout=0.2):
                pass
        with other.turn_lock("another", timeout=0):
            pass
    with other.turn_lock("s", timeout=0):
        pass


async def test_aio_runs_off_the_event_loop(store: SessionStore) -> None:
    info = await store.aio.append("s", [user("async")])
    loaded = await store.aio.load("s")
    assert loaded.messages == [user("async")] and loaded.info.version == info.version


# -- ids ---------------------------------------------------------------------------------------

BAD_IDS = ["../x", "", "a/b", ".hidden", "con", "x" * 129, "sp ace"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_are_refused_by_every_method(store: SessionStore, bad: str) -> None:
    calls = [
        lambda: store.load(bad),
        lambda: store.info(bad),
        lambda: store.exists(bad),
        lambda: store.append(bad, [user("x")]),
        lambda: store.replace(bad, [user("x")]),
        lambda: store.delete(bad),
        lambda: store.restore(bad),
        lambda: store.purge(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidSessionIdError):
            call()
    assert store.list() == []


# -- several processes -------------------------------------------------------------------------

WORKER = """
import sys
from scratchy.sessions import SessionManager
location, sid, worker, count = sys.argv[1:]
sm = SessionManager(location)
for i in range(int(count)):
    sm.append_messages(sid, [
        {"role": "user", "content": f"w{worker}-{i}"},
        {"role": "assistant", "content": f"r{worker}-{i}"},
    ])
"""


def test_appends_from_several_processes(backend: Backend) -> None:
    workers, count = 4, 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, backend.location, "shared", str(w), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for w in range(workers)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
    loaded = backend.make().load("shared")
    assert loaded is not None
    msgs = loaded.messages
    assert len(msgs) == workers * count * 2 == loaded.info.message_count
    for k in range(0, len(msgs), 2):  # each append stayed in one piece
        worker_i = msgs[k]["content"][1:]
        assert msgs[k + 1]["content"] == "r" + worker_i
    users = [m["content"] for m in msgs if m["role"] == "user"]
    assert len(set(users)) == len(users)
    for w in range(workers):
        mine = [u for u in users if u.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(count)]


USAGE_WORKER = """
import sys
from scratchy.sessions import open_store
location, count = sys.argv[1:]
store = open_store(location)
for i in range(int(count)):
    store.append("u", [{"role": "user", "content": str(i)}],
                 usage={"input_tokens": 10, "output_tokens": 1})
"""


def test_usage_totals_add_up_across_processes(backend: Backend) -> None:
    workers, count = 3, 20
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", USAGE_WORKER, backend.location, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
    info = backend.make().info("u")
    assert info is not None and info.message_count == workers * count
    assert info.metadata["usage"] == {
        "input_tokens": 10 * workers * count,
        "output_tokens": workers * count,
    }


# -- through SessionManager and Agent ----------------------------------------------------------


async def test_agent_saves_through_session_manager(backend: Backend) -> None:
    from scratchy import Agent, SessionManager
    from scratchy.testing import FakeProvider

    agent = Agent(
        provider=FakeProvider(["first reply", "second reply"]),
        session_manager=SessionManager(backend.location),
    )
    assert await agent.chat("hello there", session_id="chat") == "first reply"
    assert await agent.chat("and again", session_id="chat") == "second reply"
    sm = SessionManager(store=backend.make())
    contents = [m["content"] for m in sm.load_session("chat") or []]
    assert contents[-4:] == ["hello there", "first reply", "and again", "second reply"]
    rows = sm.list_sessions()
    assert rows[0]["id"] == "chat" and rows[0]["title"] == "hello there"
    again = Agent(
        provider=FakeProvider(["third"]), session_manager=SessionManager(store=backend.make())
    )
    assert await again.chat("more", session_id="chat") == "third"
    assert len(sm.load_session("chat") or []) == len(contents) + 2

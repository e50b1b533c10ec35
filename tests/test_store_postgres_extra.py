"""PostgreSQL-only checks of the store: schema upgrades, index use, locks and races."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from scratchy.errors import SessionBusyError, SessionConflictError
from tests.test_store_contract import drop_pg_schema

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A fresh schema: (store URL with one pooled connection, schema name)."""
    schema = f"pgx_{uuid.uuid4().hex[:10]}"
    yield f"{postgres_url}?schema={schema}&pool_size=1", schema
    drop_pg_schema(postgres_url, schema)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@contextlib.contextmanager
def released_store(url: str, version: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A store of the released schema ``version`` (only its migrations), closed on exit."""
    from scratchy.stores import postgres

    with monkeypatch.context() as patch:
        patch.setattr(postgres, "MIGRATIONS", postgres.MIGRATIONS[:version])
        patch.setattr(postgres, "SCHEMA_VERSION", version)
        store = postgres.PostgresStore(url)
        try:
            yield store
        finally:
            store.close()


def schema_state(postgres_url: str, schema: str) -> tuple[list[int], set[str]]:
    """The schema's applied migration versions (sorted) and its index names."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        versions = [r[0] for r in conn.execute("SELECT version FROM scratchy_schema_migrations")]
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
            )
        }
    return sorted(versions), indexes


def test_v2_schema_is_upgraded_with_cjk_bodies_split(
    postgres_url: str, pg: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scratchy.stores.postgres import SCHEMA_VERSION, PostgresStore

    url, schema = pg
    with released_store(url, 2, monkeypatch):  # a store of the released version 2
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute(
            "INSERT INTO scratchy_sessions (id, created_at, updated_at, title, message_count,"
            " version) VALUES ('ja', now(), now(), '東京', 2, 1)"
        )
        conn.execute(  # bodies as version 2 stored them: CJK not split
            "INSERT INTO scratchy_messages SELECT pk, 0, 'user',"
            ' \'{"role":"user","content":"東京は大きい都市です"}\', \'東京は大きい都市です\''
            " FROM scratchy_sessions"
        )
        conn.execute(
            "INSERT INTO scratchy_messages SELECT pk, 1, 'user', 'not json', 'café ü'"
            " FROM scratchy_sessions"
        )
        assert [r[0] for r in conn.execute("SELECT version FROM scratchy_schema_migrations")] == [
            1,
            2,
        ]
    store = PostgresStore(url)
    try:
        assert [(h.session_id, h.index) for h in store.search("都市")] == [("ja", 0)]
        assert store.search("市都") == []
        assert [h.index for h in store.search("café")] == [1]  # a bad row keeps its body
    finally:
        store.close()
    versions, indexes = schema_state(postgres_url, schema)
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert "scratchy_sessions_owner_page" in indexes
    assert "scratchy_sessions_page" not in indexes and "scratchy_sessions_updated" not in indexes
    PostgresStore(url).close()  # idempotent


def test_v4_schema_gets_the_owner_page_index(
    postgres_url: str, pg: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scratchy.stores.postgres import SCHEMA_VERSION, PostgresStore

    url, schema = pg
    with released_store(url, 4, monkeypatch) as old:  # a store of the released version 4
        for owner in ("alice", "bob", None):
            view = old if owner is None else old.scoped(owner)
            for i in range(3):
                view.append(f"s{i}", [user(f"{owner} {i}")])
    store = PostgresStore(url)
    for owner in ("alice", "bob", None):
        view = store if owner is None else store.scoped(owner)
        first = view.list_page(limit=2)
        assert [i.id for i in first.items] == ["s2", "s1"]
        assert [i.id for i in view.list_page(limit=2, cursor=first.next_cursor).items] == ["s0"]
    store.close()
    versions, indexes = schema_state(postgres_url, schema)
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert "scratchy_sessions_owner_page" in indexes and "scratchy_sessions_page" not in indexes


def test_pages_use_the_owner_keyset_index(postgres_url: str, pg: tuple[str, str]) -> None:
    from scratchy.stores.postgres import _BY_ID, _NS, PostgresStore

    url, schema = pg
    store = PostgresStore(url)
    for i in range(5):
        store.append(f"s{i}", [user(str(i))])
        store.scoped("bob").append(f"b{i}", [user(str(i))])  # newer, another owner's
    first = store.list_page(limit=2)
    assert [i.id for i in first.items] == ["s4", "s3"]
    assert [i.id for i in store.scoped("bob").list_page(limit=2).items] == ["b4", "b3"]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM scratchy_sessions WHERE deleted_at IS NULL "
                f"AND {_NS} = 'alice/' AND (updated_at, {_BY_ID}) < (now(), 'x') "
                f"ORDER BY updated_at DESC, {_BY_ID} DESC LIMIT 3"
            )
        )
    # the namespace and the keyset are both index conditions: no filter, no sort
    assert "scratchy_sessions_owner_page" in plan and "Sort" not in plan, plan
    assert "Filter" not in plan and "ROW(updated_at" in plan, plan
    store.close()


def test_tsquery_quotes_every_word() -> None:
    from scratchy.stores.postgres import tsquery

    text = tsquery([["it's"], ["a\\b", "c"], ["pre"]])
    assert text == "('it''s') & ('a\\\\b' <-> 'c') & ('pre':*)"


def test_search_is_not_fooled_by_query_syntax(pg: tuple[str, str]) -> None:
    from scratchy.stores.postgres import PostgresStore

    store = PostgresStore(pg[0])
    store.append("s", [user("apples & oranges | pears")])
    assert [h.index for h in store.search("apples & !oranges")] == [0]
    assert [h.index for h in store.search("') | ('pears")] == [0]
    assert store.search("apples <-> zebra") == []
    store.close()


def test_restore_and_turn_lock_with_one_pooled_connection(pg: tuple[str, str]) -> None:
    from scratchy.stores.postgres import PostgresStore

    store = PostgresStore(pg[0])  # pool_size=1: nothing may need a second pooled connection
    store.append("s", [user("hello")])
    store.delete("s")
    assert store.restore("s").message_count == 1
    with store.turn_lock("s", timeout=1):
        store.append("s", [user("inside the turn")])
        assert store.info("s").message_count == 2  # type: ignore[union-attr]
    store.close()


def test_concurrent_creation_has_one_winner(pg: tuple[str, str]) -> None:
    from scratchy.stores.postgres import PostgresStore

    url = pg[0].replace("pool_size=1", "pool_size=8")
    store = PostgresStore(url)
    for round_ in range(5):
        sid = f"race{round_}"
        results: list[str] = []
        barrier = threading.Barrier(6)

        def create(
            n: int, sid: str = sid, results: list[str] = results, barrier: Any = barrier
        ) -> None:
            barrier.wait()
            try:
                store.append(sid, [user(f"w{n}")], expected_version="")
                results.append("ok")
            except SessionConflictError:
                results.append("conflict")

        threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["conflict"] * 5 + ["ok"]
        assert store.info(sid).message_count == 1  # type: ignore[union-attr]
    store.close()


HOLDER = """
import sys, time
from scratchy.stores.postgres import PostgresStore
store = PostgresStore(sys.argv[1])
with store.turn_lock("s", timeout=5):
    print("held", flush=True)
    time.sleep(60)
"""


def test_turn_lock_of_a_killed_process_is_released(pg: tuple[str, str]) -> None:
    from scratchy.stores.postgres import PostgresStore

    url = pg[0]
    store = PostgresStore(url)
    store.scoped("alice").append("s", [user("x")])  # creates the schema before the holder runs
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
        with pytest.raises(SessionBusyError) as err:
            with store.turn_lock("s", timeout=0.3):
                pass
        assert err.value.session_id == "s"
        with store.scoped("alice").turn_lock("s", timeout=0):  # another owner's "s"
            pass
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    with store.turn_lock("s", timeout=10):
        assert time.monotonic() < deadline
    store.close()

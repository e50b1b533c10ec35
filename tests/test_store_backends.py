"""What is particular to the database stores: URLs, errors, schema migrations, corruption."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratchy.errors import (
    MissingDependencyError,
    SessionCorruptedError,
    StoreUnavailableError,
    UsageError,
)
from scratchy.sessions import SessionManager
from scratchy.stores import BACKENDS, store_for_url
from scratchy.stores._db import mask_url
from scratchy.stores.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, path_from_url
from tests.servers import free_port
from tests.test_store_contract import drop_pg_schema, drop_redis_prefix


def test_urls_are_registered() -> None:
    assert BACKENDS["sqlite"].endswith(":SQLiteStore")
    assert BACKENDS["redis"] == BACKENDS["rediss"]
    assert BACKENDS["postgresql"] == BACKENDS["postgres"]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:secret@db.example:5432/app", "postgresql://user:***@db.example:5432/app"),
        ("redis://:pw@localhost:6379/0?prefix=x:", "redis://:***@localhost:6379/0?prefix=x:"),
        ("redis://localhost/1", "redis://localhost/1"),
        ("postgresql://u@h/db?password=p&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    ],
)  # fmt: skip
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_sqlite_url_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert path_from_url("sqlite:///rel/s.db") == tmp_path / "rel" / "s.db"
    assert path_from_url("sqlite:////abs/s.db") == Path("/abs/s.db")
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite://host/x.db"):
        with pytest.raises(UsageError):
            path_from_url(bad)
    store = SQLiteStore("sqlite:///rel/s.db")
    assert store.location == f"sqlite:///{tmp_path}/rel/s.db"
    assert (tmp_path / "rel" / "s.db").is_file()


def test_import_does_not_load_drivers() -> None:
    code = (
        "import sys, scratchy, scratchy.stores, scratchy.sessions, scratchy.stores.sqlite\n"
        "from scratchy.cli import sessions_cmd\n"
        "bad = [m for m in ('redis', 'psycopg', 'psycopg_pool') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [("redis://localhost/0", "redis", "redis"), ("postgresql://u@h/db", "psycopg", "postgres")],
)
def test_missing_driver_names_the_extra(url: str, package: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from scratchy.errors import MissingDependencyError\n"
        "from scratchy.stores import store_for_url\n"
        "try:\n"
        f"    store_for_url({url!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"pip install 'scratchy[{extra}]'" in out.stdout
    assert issubclass(MissingDependencyError, ImportError)


# -- unreachable servers ---------------------------------------------------------------------


def test_unreachable_redis(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0?retries=1"
    with pytest.raises(StoreUnavailableError) as err:
        store_for_url(url)
    text = str(err.value)
    assert "hunter2" not in text and ":***@127.0.0.1" in text
    assert "is the server running? Start it or check the URL" in text


def test_unreachable_postgres() -> None:
    url = f"postgresql://me:hunter2@127.0.0.1:{free_port()}/db?pool_timeout=0.5"
    with pytest.raises(StoreUnavailableError) as err:
        SessionManager(url)
    text = str(err.value)
    assert "hunter2" not in text and "postgresql://me:***@127.0.0.1" in text
    assert "is the server running?" in text and "\n" not in text


def test_missing_postgres_database_fails_fast(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="no_such_database"):
        store_for_url(url)
    assert time.monotonic() - start < 5


def test_unusable_sqlite_file(tmp_path: Path) -> None:
    (tmp_path / "not_a_db").write_bytes(b"this is not an SQLite database, just text " * 100)
    with pytest.raises(StoreUnavailableError, match="not_a_db"):
        SQLiteStore(f"sqlite:///{tmp_path}/not_a_db")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailableError):
        SQLiteStore(f"sqlite:///{tmp_path}/file/sub.db")


# -- SQLite schema migrations ----------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
    applied_at TEXT NOT NULL);
INSERT INTO schema_migrations VALUES (1, 'sessions and messages', '2025-01-01T00:00:00+00:00');
CREATE TABLE sessions (pk INTEGER PRIMARY KEY, id TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', metadata TEXT NOT NULL DEFAULT '{}',
    message_count INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL, deleted_at TEXT);
CREATE UNIQUE INDEX sessions_live ON sessions(id) WHERE deleted_at IS NULL;
CREATE INDEX sessions_updated ON sessions(updated_at) WHERE deleted_at IS NULL;
CREATE INDEX sessions_trash ON sessions(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE messages (mid INTEGER PRIMARY KEY,
    session_pk INTEGER NOT NULL REFERENCES sessions(pk) ON DELETE CASCADE,
    idx INTEGER NOT NULL, role TEXT NOT NULL, data TEXT NOT NULL, text TEXT NOT NULL,
    UNIQUE (session_pk, idx));
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters VALUES ('version', 7);
INSERT INTO sessions VALUES (1, 'old_one', '2025-01-01T10:00:00.000000+00:00',
    '2025-01-02T10:00:00.000000+00:00', 'An old armadillo question', '{"a": 1}', 2, 80, 7, NULL);
INSERT INTO messages VALUES (1, 1, 0, 'user',
    '{"role":"user","content":"An old armadillo question"}', 'An old armadillo question');
INSERT INTO messages VALUES (2, 1, 1, 'assistant',
    '{"role":"assistant","content":"Armadillos dig."}', 'Armadillos dig.');
PRAGMA user_version = 1;
"""


def _schema(path: Path) -> tuple[int, list[tuple[int, str]]]:
    with sqlite3.connect(path) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    return version, rows


def test_sqlite_new_database_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteStore(f"sqlite:///{path}").append("s", [{"role": "user", "content": "hi"}])
    version, rows = _schema(path)
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    assert rows == [(v, name) for v, name, _ in MIGRATIONS]
    store = SQLiteStore(f"sqlite:///{path}")  # re-opening changes nothing
    assert _schema(path) == (version, rows)
    assert store.load("s").messages == [{"role": "user", "content": "hi"}]  # type: ignore[union-attr]


def test_sqlite_v1_database_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = SQLiteStore(f"sqlite:///{path}")
    version, rows = _schema(path)
    assert version == SCHEMA_VERSION and [v for v, _ in rows] == list(range(1, SCHEMA_VERSION + 1))
    loaded = store.load("old_one")
    assert loaded is not None and loaded.info.title == "An old armadillo question"
    assert loaded.info.metadata == {"a": 1} and loaded.info.message_count == 2
    assert {(h.session_id, h.index) for h in store.search("armadillo")} == {
        ("old_one", 0),
        ("old_one", 1),
    }
    info = store.append("old_one", [{"role": "user", "content": "armadillos again"}])
    assert int(info.version) == 8  # the counter went on from the old one
    assert {h.index for h in store.search("armadillo")} == {0, 1, 2}
    assert [h.index for h in store.search("dig")] == [1]
    SQLiteStore(f"sqlite:///{path}")
    assert _schema(path) == (version, rows)


def test_sqlite_v3_database_gets_the_owner_page_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scratchy.stores import sqlite as sqlite_store

    url = f"sqlite:///{tmp_path}/v3.db"
    with monkeypatch.context() as patch:  # a store of the released version 3 makes the database
        patch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:3])
        patch.setattr(sqlite_store, "SCHEMA_VERSION", 3)
        old = SQLiteStore(url)
        for owner in ("alice", "bob", None):
            view = old if owner is None else old.scoped(owner)
            for i in range(3):
                view.append(f"s{i}", [{"role": "user", "content": f"{owner} {i}"}])
        old.close()
    store = SQLiteStore(url)
    assert _schema(tmp_path / "v3.db")[0] == SCHEMA_VERSION
    for owner in ("alice", "bob", None):
        view = store if owner is None else store.scoped(owner)
        first = view.list_page(limit=2)
        assert [i.id for i in first.items] == ["s2", "s1"]
        assert [i.id for i in view.list_page(limit=2, cursor=first.next_cursor).items] == ["s0"]
    with sqlite3.connect(tmp_path / "v3.db") as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE deleted_at IS NULL "
            f"AND {sqlite_store._NS}=? AND (updated_at, id) < (?, ?) "
            "ORDER BY updated_at DESC, id DESC LIMIT 3",
            ("alice/", "9999", "x"),
        ).fetchall()
    assert "sessions_page" in names and "sessions_updated" not in names
    text = " ".join(str(r[-1]) for r in plan)
    assert "USING INDEX sessions_page" in text and "TEMP B-TREE" not in text, text


def test_sqlite_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreUnavailableError, match="upgrade Scratchy"):
        SQLiteStore(f"sqlite:///{path}")


def test_sqlite_many_openers_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            SQLiteStore(url).append("s", [{"role": "user", "content": "x"}])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _schema(tmp_path / "race.db")[0] == SCHEMA_VERSION
    assert SQLiteStore(url).info("s").message_count == 6  # type: ignore[union-attr]


OPEN_AND_APPEND = """
import sys
from scratchy.stores.sqlite import SQLiteStore
SQLiteStore(sys.argv[1]).append("s", [{"role": "user", "content": "x"}])
"""


def test_sqlite_processes_opening_a_new_database_at_once(tmp_path: Path) -> None:
    # Two processes switching a brand-new database to WAL at the same instant once got
    # "database is locked" at once (SQLite does not call its busy handler there): repeat
    # the race on fresh databases and require that every opener succeeds.
    for round_ in range(8):
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AND_APPEND, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(4)
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out.decode()
        assert SQLiteStore(url).info("s").message_count == 4  # type: ignore[union-attr]


def test_sqlite_threads_share_one_store(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/t.db")

    def work(w: int) -> None:
        for i in range(25):
            store.append("s", [{"role": "user", "content": f"{w}-{i}"}])
            store.load("s")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    contents = [m["content"] for m in store.load("s").messages]  # type: ignore[union-attr]
    assert sorted(contents) == sorted(f"{w}-{i}" for w in range(4) for i in range(25))


def test_sqlite_corrupted_message_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SQLiteStore(f"sqlite:///{path}")
    store.append("s", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE messages SET data='{broken' WHERE idx=1")
    with pytest.raises(SessionCorruptedError, match="message 1"):
        store.load("s")
    assert store.info("s").message_count == 2  # type: ignore[union-attr]
    assert store.delete("s") is True


# -- PostgreSQL schema migrations ------------------------------------------------------------


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    schema = f"mig_{uuid.uuid4().hex[:10]}"
    yield f"{postgres_url}?schema={schema}&pool_size=1", schema
    drop_pg_schema(postgres_url, schema)


def test_postgres_v1_schema_is_upgraded(postgres_url: str, pg_schema: tuple[str, str]) -> None:
    import psycopg

    from scratchy.stores.postgres import MIGRATIONS as PG_MIGRATIONS
    from scratchy.stores.postgres import PostgresStore

    url, schema = pg_schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute(
            "CREATE TABLE scratchy_schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for statement in PG_MIGRATIONS[0][2]:  # version 1 exactly as it was released
            conn.execute(statement)
        conn.execute("INSERT INTO scratchy_schema_migrations (version, name) VALUES (1, 'v1')")
        conn.execute(
            "INSERT INTO scratchy_sessions (id, created_at, updated_at, title, message_count,"
            " version) VALUES ('legacy', now(), now(), 'Old platypus', 1, 1)"
        )
        conn.execute(
            "INSERT INTO scratchy_messages SELECT pk, 0, 'user',"
            ' \'{"role":"user","content":"Old platypus"}\', \'Old platypus\' FROM scratchy_sessions'
        )
    store = PostgresStore(url)
    try:
        assert [(h.session_id, h.index) for h in store.search("platypus")] == [("legacy", 0)]
        assert store.load("legacy").messages == [{"role": "user", "content": "Old platypus"}]  # type: ignore[union-attr]
    finally:
        store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        versions = [r[0] for r in conn.execute("SELECT version FROM scratchy_schema_migrations")]
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'scratchy_messages_fts' "
            "AND schemaname = %s",
            (schema,),
        ).fetchone()
    from scratchy.stores.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION

    assert sorted(versions) == list(range(1, PG_SCHEMA_VERSION + 1))
    assert index is not None and "gin" in index[0].lower()
    PostgresStore(url).close()  # idempotent


def test_postgres_many_openers_migrate_once(pg_schema: tuple[str, str]) -> None:
    from scratchy.stores.postgres import PostgresStore

    url, _ = pg_schema
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            store = PostgresStore(url)
            store.append("s", [{"role": "user", "content": "x"}])
            store.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = PostgresStore(url)
    assert store.info("s").message_count == 4  # type: ignore[union-attr]
    store.close()


# -- Redis: a write re-sent after a lost reply is applied once ------------------------------


def test_redis_resent_write_is_applied_once(redis_url: str) -> None:
    from scratchy.stores.redis import RedisStore

    prefix = f"idem-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(f"{redis_url}?prefix={prefix}")
    try:
        from scratchy.stores.base import Header, utcnow

        msg = [{"role": "user", "content": "once"}]
        now = utcnow()
        header = Header("once", now, now, {})
        first = store._run_write("s", "append", msg, seen="", header=header, token="tok1")
        again = store._run_write("s", "append", msg, seen="", header=header, token="tok1")
        assert first == again  # a re-sent write is not applied twice
        store.append("s", msg)
        assert store.info("s").message_count == 2  # type: ignore[union-attr]
        store._redis.lset(f"{prefix}m:s", 1, "{broken")
        with pytest.raises(SessionCorruptedError, match="message 1"):
            store.load("s")
    finally:
        store.close()
        drop_redis_prefix(redis_url, prefix)

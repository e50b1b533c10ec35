"""Session stores side by side: TOON files, SQLite, Redis and PostgreSQL.

Run: ``python benchmarks/bench_backends.py`` (about two minutes). It starts private Redis and
PostgreSQL servers with ``tests/servers.py`` (installing them from Debian packages when missing),
unless ``--redis-url``/``--postgres-url`` name servers to use (their data is left in a fresh key
prefix / schema, removed at the end).

Measured, in milliseconds (median of several runs), through the public store API:

* append one turn (4 messages) to a session of 10,000 messages;
* load a session of 10,000 messages (a new store instance for the TOON files: no warm cache);
* search one word in that session;
* list N sessions of 50 messages each. Filling N sessions is given a time budget per backend
  (``--budget``); a backend that cannot fill ``--sessions`` in it is listed with fewer, and the
  count used is printed.

Durability settings: TOON fsyncs every write, SQLite runs WAL with ``synchronous=FULL``,
PostgreSQL runs with ``fsync=on``, Redis with ``appendonly yes`` (fsync every second).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_store import history, turn  # noqa: E402

from scratchy.stores import store_for_url  # noqa: E402
from scratchy.stores.toon_files import TOONFileStore  # noqa: E402

NAMES = ["toon", "sqlite", "redis", "postgres"]


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class Target:
    """One backend: how to open a fresh store on its location."""

    def __init__(self, name: str, location: str) -> None:
        self.name = name
        self.location = location

    def open(self) -> Any:
        if self.name == "toon":
            return TOONFileStore(self.location)
        return store_for_url(self.location)


def bench_one(
    target: Target, many: Target, args: argparse.Namespace, msgs: list[dict]
) -> dict[str, Any]:
    """Time one backend; ``many`` is an empty location of the same kind for the listing."""
    store = target.open()
    store.replace("big", msgs)
    one_turn = turn(99_999)
    out: dict[str, Any] = {}
    out["append"] = timed(lambda: store.append("big", one_turn), args.repeat)
    loader = (lambda: target.open().load("big")) if target.name == "toon" else None
    out["load"] = timed(loader or (lambda: store.load("big")), args.repeat)
    store.search("file")  # builds the TOON store's index once
    out["search"] = timed(lambda: store.search("file", limit=20), args.repeat)
    many_store = many.open()
    base = history(50)
    deadline = time.monotonic() + args.budget
    workers = 1 if target.name == "sqlite" else 4

    def fill(k: int) -> int:
        count = 0
        for i in range(k, args.sessions, workers):
            if time.monotonic() > deadline:
                break
            many_store.replace(f"session_{i:05d}", base)
            count += 1
        return count

    with ThreadPoolExecutor(workers) as pool:
        filled = sum(pool.map(fill, range(workers)))
    out["sessions"] = filled
    lister = (lambda: many.open().list()) if target.name == "toon" else many_store.list
    lister()
    out["list"] = timed(lister, max(3, args.repeat // 2))
    assert len(many_store.list()) == filled
    for s in (store, many_store):
        if hasattr(s, "close"):
            s.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--budget", type=float, default=35.0, help="seconds to fill sessions")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--only", default=",".join(NAMES), help="comma-separated backends")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_backends_"))
    tag = uuid.uuid4().hex[:8]
    started: list[Any] = []
    versions = [f"SQLite {sqlite3.sqlite_version}"]
    try:
        redis_url, pg_url = args.redis_url, args.postgres_url
        wanted = args.only.split(",")
        if "redis" in wanted and redis_url is None:
            from tests.servers import RedisServer

            server: Any = RedisServer()
            server.start()
            started.append(server)
            redis_url = server.url
        if "postgres" in wanted and pg_url is None:
            from tests.servers import PostgresServer

            server = PostgresServer(fsync=True)
            server.start()
            started.append(server)
            pg_url = server.url
        locations = {
            "toon": str(root / "toon"),
            "toon:many": str(root / "toon_many"),
            "sqlite": f"sqlite:///{root}/big.db",
            "sqlite:many": f"sqlite:///{root}/many.db",
            "redis": f"{redis_url}?prefix=bench-{tag}:",
            "redis:many": f"{redis_url}?prefix=bench-{tag}-many:",
            "postgres": f"{pg_url}?schema=bench_{tag}",
            "postgres:many": f"{pg_url}?schema=bench_{tag}_many",
        }
        msgs = history(args.messages)
        results: dict[str, dict[str, Any]] = {}
        for name in NAMES:
            if name not in wanted:
                continue
            t0 = time.monotonic()
            results[name] = bench_one(
                Target(name, locations[name]), Target(name, locations[f"{name}:many"]), args, msgs
            )
            print(f"  {name}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            versions.append(f"Redis {client.info()['redis_version']} (appendonly, everysec)")
            for key in client.scan_iter(match=f"bench-{tag}*", count=5000):
                client.delete(key)
            client.close()
        if pg_url:
            import psycopg

            with psycopg.connect(pg_url, autocommit=True) as conn:
                v = conn.execute("SHOW server_version").fetchone()[0]
                fsync = conn.execute("SHOW fsync").fetchone()[0]
                versions.append(f"PostgreSQL {v} (fsync={fsync})")
                for schema in (f"bench_{tag}", f"bench_{tag}_many"):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        for server in started:
            server.close()
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}; " + ", ".join(versions)
    )
    names = list(results)
    print(f"{'operation (median ms)':<44}" + "".join(f"{n:>11}" for n in names))
    n = args.messages
    rows = [
        (f"append one turn at {n:,} messages", "append"),
        (f"load {n:,} messages", "load"),
        (f"search one word in {n:,} messages", "search"),
        ("list N sessions x 50 messages", "list"),
    ]
    for label, key in rows:
        print(f"{label:<44}" + "".join(f"{results[x][key]:>11.1f}" for x in names))
    print(
        f"{'  N (sessions listed)':<44}" + "".join(f"{results[x]['sessions']:>11,}" for x in names)
    )


if __name__ == "__main__":
    main()

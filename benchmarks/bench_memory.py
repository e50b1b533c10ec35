"""Memory benchmarks: recall latency among 100,000 memories, and what memory adds to a turn.

Run: ``python benchmarks/bench_memory.py [--count 100000] [--backends toon,sqlite,redis,postgres]``
(Redis and PostgreSQL need ``--redis-url`` / ``--postgres-url``, or the servers that
``tests/servers.py`` starts: pass ``--start-servers``).

The memories are generated sentences over a 5,000-word vocabulary with Zipf-like frequencies
(a few words common, most rare), as notes about people and projects are. Each query is a
sentence of the same kind (3-8 words, like a first message), recall limit 5; the "common words"
query is made of the 6 most frequent non-stop words, the worst case for ranking. Figures are
medians and 95th percentiles of warm queries, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scratchy.memory import MemoryStore  # noqa: E402
from scratchy.stores.memory_base import Memory, backend_for  # noqa: E402

SYLLABLES = "ka lo mi ra te su no vi pe da zo ri fa gu ne mo sa ti lu be".split()
COMMON = (
    "prefers uses project python tabs spaces editor team meeting deploy server tests name "
    "likes works language code review branch release docs database api frontend backend"
).split()


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    words = list(COMMON)
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def sentence(rng: random.Random, words: list[str], weights: list[float], n: int) -> str:
    return "The user " + " ".join(rng.choices(words, weights, k=n))


def generate(count: int, seed: int = 7) -> tuple[list[Memory], list[str], list[str]]:
    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = [1 / (i + 1) ** 1.07 for i in range(len(words))]
    now = "2026-01-01T00:00:00.000000+00:00"
    memories = [
        Memory(
            id=f"m_{i:010x}",
            text=sentence(rng, words, weights, rng.randint(6, 14)),
            tags=[rng.choice(COMMON)],
            created_at=now,
            updated_at=now,
            source={"session": f"s{i % 500}", "message": 1},
        )
        for i in range(count)
    ]
    queries = [sentence(rng, words, weights, rng.randint(3, 8))[9:] for _ in range(50)]
    return memories, queries, COMMON[:6]


def timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000


def stats(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"median {statistics.median(samples):6.2f} ms   p95 {p95:6.2f} ms"


def open_store(name: str, args: argparse.Namespace, tmp: Path) -> Any:
    tag = uuid.uuid4().hex[:8]
    if name == "toon":
        from scratchy.stores.toon_files import TOONFileStore

        return TOONFileStore(tmp / "sessions")
    from scratchy.stores import store_for_url

    if name == "sqlite":
        return store_for_url(f"sqlite:///{tmp}/sessions.db")
    if name == "redis":
        return store_for_url(f"{args.redis_url}?prefix=bench-{tag}:")
    return store_for_url(f"{args.postgres_url}?schema=bench_{tag}")


def cleanup(name: str, store: Any, args: argparse.Namespace) -> None:
    if name == "redis":
        keys = list(store._redis.scan_iter(match=f"{store.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            store._redis.delete(*keys[i : i + 500])
    elif name == "postgres":
        with store._get_pool().connection() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')
    store.close()


def bench_recall(name: str, args: argparse.Namespace, tmp: Path) -> None:
    memories, queries, common = generate(args.count)
    store = open_store(name, args, tmp)
    try:
        backend = backend_for(store)
        start = time.perf_counter()
        for i in range(0, len(memories), 10_000):
            backend.insert_many(memories[i : i + 10_000])
        load = time.perf_counter() - start
        mem = MemoryStore(store)
        first = timed(mem.recall, queries[0], limit=5)  # opens the index (Redis: the mirror)
        samples = [timed(mem.recall, q, limit=5) for q in queries for _ in range(3)]
        worst = [timed(mem.recall, " ".join(common), limit=5) for _ in range(20)]
        remember = [timed(mem.remember, f"The user benchmark fact {i} {uuid.uuid4().hex}")
                    for i in range(20)]  # fmt: skip
        after = [timed(mem.recall, q, limit=5) for q in queries[:20]]
        print(f"{name:9} {args.count:,} memories (loaded in {load:.1f} s; first query "
              f"{first:.0f} ms)")  # fmt: skip
        print(f"  recall, typical first message  {stats(samples)}")
        print(f"  recall, 6 most common words    {stats(worst)}")
        print(f"  remember (dedup check + write) {stats(remember)}")
        print(f"  recall after those writes      {stats(after)}")
        hits = mem.recall(queries[1], limit=5)
        print(f"  e.g. {queries[1]!r} -> {len(hits)} hits, best: {hits[0].text[:50]!r}"
              if hits else f"  e.g. {queries[1]!r} -> no hits")  # fmt: skip
    finally:
        cleanup(name, store, args)


def bench_turn(tmp: Path, count: int, turns: int = 200) -> None:
    """Milliseconds a turn takes with the scripted model: memory off, on, and auto (the three
    agents take turns one after the other, so that the machine's load affects them alike)."""
    from scratchy import Agent, SessionManager
    from scratchy.testing import FakeProvider

    memories, queries, _ = generate(count, seed=11)

    def reply(messages: list[Any], tools: list[Any]) -> str:
        if messages[0].get("content", "").startswith("You maintain a small"):
            return '{"facts": []}'
        return "OK."

    modes: list[Any] = [False, True, "auto"]
    agents = []
    for mode in modes:
        manager = SessionManager(tmp / str(mode))
        if mode:
            backend_for(manager.store).insert_many(memories)
        agents.append(Agent(provider=FakeProvider(reply), session_manager=manager, memory=mode))

    async def go() -> list[list[float]]:
        out: list[list[float]] = [[], [], []]
        for i in range(turns):
            for n, agent in enumerate(agents):
                start = time.perf_counter()
                await agent.chat(queries[i % len(queries)], session_id=f"t{i}")
                out[n].append((time.perf_counter() - start) * 1000)
        return out

    off, on, auto = (statistics.median(x) for x in asyncio.run(go()))
    print(f"turn with the scripted model, new session each time, {count:,} memories stored:")
    print(f"  memory off    {off:6.2f} ms (median of {turns})")
    print(f"  memory=True   {on:6.2f} ms  (+{on - off:.2f} ms: recall into the context)")
    print(f"  memory='auto' {auto:6.2f} ms  (+{auto - off:.2f} ms: and the extraction call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--backends", default="toon,sqlite,redis,postgres")
    parser.add_argument("--redis-url")
    parser.add_argument("--postgres-url")
    parser.add_argument(
        "--start-servers",
        action="store_true",
        help="start private Redis/PostgreSQL servers (tests/servers.py)",
    )
    parser.add_argument("--turn-memories", type=int, default=10_000)
    args = parser.parse_args()
    names = [n for n in args.backends.split(",") if n]
    servers: list[Any] = []
    if args.start_servers:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.servers import PostgresServer, RedisServer

        if "redis" in names and not args.redis_url:
            r = RedisServer()
            r.start()
            servers.append(r)
            args.redis_url = r.url
        if "postgres" in names and not args.postgres_url:
            p = PostgresServer()
            p.start()
            servers.append(p)
            args.postgres_url = p.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                if name == "redis" and not args.redis_url:
                    print("redis     skipped (no --redis-url and no --start-servers)")
                    continue
                if name == "postgres" and not args.postgres_url:
                    print("postgres  skipped (no --postgres-url and no --start-servers)")
                    continue
                bench_recall(name, args, Path(tmp) / name)
            bench_turn(Path(tmp) / "turns", args.turn_memories)
    finally:
        for s in servers:
            s.close()


if __name__ == "__main__":
    main()

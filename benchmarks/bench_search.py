"""Full-text search over many sessions: index build time and query latency.

Run: ``python benchmarks/bench_search.py [--sessions 10000] [--messages 50]``. Sessions are
written to a temporary directory, the FTS5 index is built by the first query, then several
queries are timed (median of repeated runs, index up to date).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from scratchy import SessionManager
from scratchy.stores.toon_files import TOONFileStore

WORDS = (
    "python rust session agent tool file search index query model token cache database "
    "function class method error retry timeout stream async thread process lock append "
    "factorial fibonacci matrix vector parser compiler network socket server client json"
).split()


def session(rng: random.Random, n: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(n - 1):
        role = "user" if i % 2 == 0 else "assistant"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
        msgs.append({"role": role, "content": text})
    return msgs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(7)
    root = Path(tempfile.mkdtemp(prefix="bench_search_"))
    try:
        sm = SessionManager(root)
        for i in range(args.sessions):
            sm.save_session(f"s{i:05d}", session(rng, args.messages))
        sm.save_session("needle", [{"role": "user", "content": "the zygomorphic needle"}])
        fresh = SessionManager(store=TOONFileStore(root))
        t = time.perf_counter()
        fresh.search("warmup")
        build = time.perf_counter() - t
        results = {}
        for query in ("zygomorphic", "factorial matrix", "python", "async stream lock"):
            times = []
            for _ in range(7):
                t = time.perf_counter()
                hits = fresh.search(query, limit=20)
                times.append((time.perf_counter() - t) * 1000)
            results[query] = (statistics.median(times), len(hits))
        size = sum(p.stat().st_size for p in (root / ".index").glob("search.sqlite*"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = args.sessions * args.messages
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}"
    )
    print(f"{args.sessions:,} sessions x {args.messages} messages ({total:,} messages)")
    print(f"index build (first search): {build:.1f} s, index size {size / 1e6:.0f} MB")
    for query, (ms, n) in results.items():
        print(f"query {query!r:<22} {ms:7.1f} ms  ({n} hits)")


if __name__ == "__main__":
    main()

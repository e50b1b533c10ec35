"""``scratchy serve`` under load, with an echo model (it measures Scratchy, not a model).

Run: ``python benchmarks/bench_server.py`` (a few minutes; ``--quick`` for a short run). For
each store (TOON files, SQLite, PostgreSQL: a private server from ``tests/servers.py`` unless
``--postgres-url``) and each worker count (1 and 4), it starts the real ``scratchy serve
--agent bench_server_agent:agent`` (a model that answers at once) on 127.0.0.1 and runs 1, 10
and 50 concurrent clients, each sending turns to its own session over a keep-alive connection
(a minimal asyncio HTTP/1.1 client, so the client's own cost stays small on this 2-core
machine). It reports turns per second and the p50/p99 latency of a turn, beside the store's
own writes of one turn measured in the same run (the input appended, then the reply: what a
server turn writes), and the difference: the server's overhead per turn. Before each store it
times the same agent called directly (no HTTP, one client, configured as the server's agents
are), and with one client it prints the server's latency minus that.

Then it fills a store with up to ``--sessions`` sessions (100,000; limited by ``--budget``
seconds) and times the first page (20) of ``GET /v1/sessions`` (median of 20).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.server_helpers import ServerProc  # noqa: E402

from scratchy.server.runtime import AgentSource  # noqa: E402
from scratchy.sessions import open_store  # noqa: E402


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve(store: str, workers: int, cwd: Path) -> ServerProc:
    """The real ``scratchy serve --agent bench_server_agent:agent`` (no keys)."""
    paths = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]
    return ServerProc(
        cwd,
        "--agent", "bench_server_agent:agent", "--store", store,
        workers=workers, keys=None, env={"PYTHONPATH": os.pathsep.join(paths)},
    )  # fmt: skip


class Conn:
    """One keep-alive HTTP/1.1 connection (just enough HTTP for JSON requests)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(port: int, clients: int, seconds: float, tag: str) -> tuple[int, list[float]]:
    """``clients`` concurrent clients sending turns for ``seconds``; (turns, latencies ms)."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        conn = Conn(port)
        sid = f"{tag}_c{n}"
        i = 0
        try:
            while time.monotonic() < stop:
                start = time.perf_counter()
                status, body = await conn.request(
                    "POST", f"/v1/sessions/{sid}/turns", {"input": f"question {i} from {n}"}
                )
                if status != 200:
                    raise RuntimeError(f"turn answered {status}: {body[:200]!r}")
                latencies.append((time.perf_counter() - start) * 1000)
                i += 1
        finally:
            conn.close()

    # one warm-up turn per client (imports, first connections), not counted
    warm = [Conn(port) for _ in range(clients)]
    await asyncio.gather(
        *(c.request("POST", f"/v1/sessions/{tag}_c{n}/turns", {"input": "hi"})
          for n, c in enumerate(warm))
    )  # fmt: skip
    for c in warm:
        c.close()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return len(latencies), latencies


def append_times(location: str, repeat: int) -> list[float]:
    """The store's writes of one turn, as the server makes them: the user's input appended when
    the turn starts, then the reply (two durable writes), on a short session, in ms."""
    store = open_store(location)
    sid = f"append_probe_{uuid.uuid4().hex[:6]}"
    store.append(sid, [{"role": "system", "content": "You are a helpful AI assistant."}])
    out = []
    for i in range(repeat):
        start = time.perf_counter()
        store.append(sid, [{"role": "user", "content": f"question {i}"}])
        store.append(sid, [{"role": "assistant", "content": f"You said: question {i}"}])
        out.append((time.perf_counter() - start) * 1000)
    return out


def direct_times(location: str, repeat: int) -> list[float]:
    """The same turn without HTTP: the bench agent configured as the server configures its
    agents (``AgentSource.make``: the input saved first, then the reply), one client, in ms."""
    from bench_server_agent import agent as make_agent

    agent = AgentSource(make_agent, None).make(open_store(location), None)
    sid = f"direct_{uuid.uuid4().hex[:6]}"

    async def run() -> list[float]:
        await agent.chat("warm up", session_id=sid)
        out = []
        for i in range(repeat):
            start = time.perf_counter()
            await agent.chat(f"question {i}", session_id=sid)
            out.append((time.perf_counter() - start) * 1000)
        return out

    return asyncio.run(run())


def fill(location: str, sessions: int, budget: float) -> int:
    """Up to ``sessions`` small sessions, within ``budget`` seconds; how many were made."""
    store = open_store(location)
    deadline = time.monotonic() + budget
    base = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    threads = 1 if location.startswith("sqlite") else 4

    def part(k: int) -> int:
        count = 0
        for i in range(k, sessions, threads):
            if time.monotonic() > deadline:
                break
            store.append(f"many_{i:06d}", base)
            count += 1
        return count

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(part, range(threads)))


async def first_page(port: int, repeat: int) -> float:
    conn = Conn(port)
    times = []
    for _ in range(repeat + 2):
        start = time.perf_counter()
        status, body = await conn.request("GET", "/v1/sessions?limit=20")
        assert status == 200 and len(json.loads(body)["items"]) == 20, body[:200]
        times.append((time.perf_counter() - start) * 1000)
    conn.close()
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="files,sqlite,postgres")
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration")
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds to fill sessions")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--quick", action="store_true", help="short runs, 10,000 sessions")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.sessions, args.budget = 2.0, 10_000, 30.0
    work = Path(tempfile.mkdtemp(prefix="bench_server_"))
    pg_server = None
    backends = args.backends.split(",")
    pg_url = args.postgres_url
    if "postgres" in backends and pg_url is None:
        from tests.servers import PostgresServer

        pg_server = PostgresServer(fsync=True)
        pg_server.start()
        pg_url = pg_server.url

    def location(backend: str, name: str) -> str:
        if backend == "files":
            return str(work / name)
        if backend == "sqlite":
            return f"sqlite:///{work / name}.db"
        sep = "&" if "?" in pg_url else "?"
        return f"{pg_url}{sep}schema={name}"

    rows = []
    try:
        for backend in backends:
            direct = direct_times(location(backend, "direct"), 200)
            print(
                f"{backend:8} the agent called directly (no HTTP), one client: p50 "
                f"{pct(direct, 0.5):5.2f} p99 {pct(direct, 0.99):5.2f} ms",
                flush=True,
            )
            for workers in map(int, args.workers.split(",")):
                where = location(backend, f"turns_{workers}w")
                server = serve(where, workers, work)
                try:
                    for clients in map(int, args.clients.split(",")):
                        tag = f"w{workers}c{clients}"
                        turns, lat = asyncio.run(load(server.port, clients, args.seconds, tag))
                        appends = append_times(location(backend, f"append_{tag}"), 200)
                        rows.append({
                            "store": backend, "workers": workers, "clients": clients,
                            "turns_per_s": turns / args.seconds,
                            "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                            "append_p50": pct(appends, 0.5), "append_p99": pct(appends, 0.99),
                        })  # fmt: skip
                        r = rows[-1]
                        versus = (
                            f"   vs direct p50 {r['p50'] - pct(direct, 0.5):+5.1f} ms"
                            if clients == 1
                            else ""
                        )
                        print(
                            f"{backend:8} {workers}w {clients:3}c  {r['turns_per_s']:7.1f} turns/s"
                            f"  p50 {r['p50']:6.1f}  p99 {r['p99']:6.1f} ms   store writes p50 "
                            f"{r['append_p50']:5.2f} p99 {r['append_p99']:5.2f} ms   overhead "
                            f"p50 {r['p50'] - r['append_p50']:6.1f} p99 "
                            f"{r['p99'] - r['append_p99']:6.1f} ms{versus}",
                            flush=True,
                        )
                finally:
                    server.close()
        print()
        for backend in backends:
            where = location(backend, "many")
            started = time.monotonic()
            made = fill(where, args.sessions, args.budget)
            print(f"{backend}: {made} sessions made in {time.monotonic() - started:.0f} s")
            server = serve(where, 1, work)
            try:
                ms = asyncio.run(first_page(server.port, 20))
            finally:
                server.close()
            print(f"{backend}: first page (20) of GET /v1/sessions among {made}: {ms:.1f} ms")
    finally:
        if pg_server is not None:
            pg_server.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

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

With 50 clients it also runs an open loop (``--open-loop``, fractions of the closed loop's
throughput, 0.5 and 0.8 by default): 50 connections sending turns at a fixed total rate, each
turn sent at its scheduled time (or as soon as its connection is free), its latency measured
from the scheduled time, so that a slow answer is not hidden by the sends it delayed
(coordinated omission). It shows the latency when the server is not saturated.

Then (``--pages``: files, SQLite, PostgreSQL and Redis) it fills each store with ``--sessions``
sessions (100,000) of the owner ``bob`` after 1,000 of ``alice`` (``bench_server_fill.py``:
the store's own layout, in bulk), starts the server with keys and times (median of 20) bob's
first page (20) of ``GET /v1/sessions``, his second page (by ``next_cursor``), alice's first
page (behind 100,000 newer sessions of bob's), and alice's ``q=`` search for a word in one of
her sessions (and for a word in every session of both owners).

``SCRATCHY_SRC=DIR`` runs the servers and this process on the code of ``DIR`` (another worktree's
``src``: a baseline in the same run).
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("SCRATCHY_SRC") or ROOT / "src")
sys.path[:0] = [str(ROOT), str(SRC), str(ROOT / "benchmarks")]

from bench_server_fill import check, fill  # noqa: E402
from tests.server_helpers import API_KEYS, KEYS, ServerProc  # noqa: E402

from scratchy.server.runtime import AgentSource  # noqa: E402
from scratchy.sessions import open_store  # noqa: E402


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve(store: str, workers: int, cwd: Path, keys: str | None = None) -> ServerProc:
    """The real ``scratchy serve --agent bench_server_agent:agent`` (no keys by default)."""
    paths = [str(SRC), str(ROOT), str(ROOT / "benchmarks")]
    return ServerProc(
        cwd,
        "--agent", "bench_server_agent:agent", "--store", store,
        workers=workers, keys=keys, env={"PYTHONPATH": os.pathsep.join(paths)},
    )  # fmt: skip


class Conn:
    """One keep-alive HTTP/1.1 connection (just enough HTTP for JSON requests)."""

    def __init__(self, port: int, headers: str = "") -> None:
        self.port = port
        self.headers = headers  # extra header lines, each ending in CRLF
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{self.headers}Content-Length: {len(data)}\r\n\r\n"
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
    stop = 0.0

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
    stop = time.monotonic() + seconds
    await asyncio.gather(*(client(n) for n in range(clients)))
    return len(latencies), latencies


async def open_loop(
    port: int, connections: int, rate: float, seconds: float, tag: str
) -> tuple[float, list[float]]:
    """Turns at ``rate`` per second in all, over ``connections`` keep-alive connections (send
    ``k`` goes on connection ``k % connections`` at ``start + k / rate``); (achieved rate,
    latencies in ms from each turn's scheduled time)."""
    latencies: list[float] = []
    total = max(connections, int(rate * seconds))
    conns = [Conn(port) for _ in range(connections)]
    # every connection opened and its session created first (not counted): the schedule
    # starts once they are all done, so that the warm-up burst is not measured as latency
    await asyncio.gather(
        *(c.request("POST", f"/v1/sessions/{tag}_o{n}/turns", {"input": "hi"})
          for n, c in enumerate(conns))
    )  # fmt: skip
    start = time.perf_counter() + 0.05

    async def connection(n: int) -> None:
        conn = conns[n]
        try:
            for k in range(n, total, connections):
                due = start + k / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                status, body = await conn.request(
                    "POST", f"/v1/sessions/{tag}_o{n}/turns", {"input": f"question {k}"}
                )
                if status != 200:
                    raise RuntimeError(f"turn answered {status}: {body[:200]!r}")
                latencies.append((time.perf_counter() - due) * 1000)
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in range(connections)))
    return len(latencies) / (time.perf_counter() - began), latencies


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


def auth_line(owner: str) -> str:
    return f"Authorization: Bearer {KEYS[owner]}\r\n"


async def timed_get(port: int, owner: str, path: str, repeat: int) -> tuple[float, Any]:
    """Median ms of ``repeat`` GETs (after two not counted) and the last answer."""
    conn = Conn(port, auth_line(owner))
    times, answer = [], None
    try:
        for _ in range(repeat + 2):
            start = time.perf_counter()
            status, body = await conn.request("GET", path)
            times.append((time.perf_counter() - start) * 1000)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
            answer = json.loads(body)
    finally:
        conn.close()
    return statistics.median(times[2:]), answer


async def pages(port: int, count: int, repeat: int) -> dict[str, float]:
    """The listing timings of ``bench_server.py --pages`` (see the module doc)."""
    out: dict[str, float] = {}
    out["bob_first"], first = await timed_get(port, "bob", "/v1/sessions?limit=20", repeat)
    assert len(first["items"]) == 20 and first["next_cursor"], first
    nxt = f"/v1/sessions?limit=20&cursor={first['next_cursor']}"
    out["bob_second"], second = await timed_get(port, "bob", nxt, repeat)
    assert second["items"][0]["id"] == f"many_{count - 21:06d}", second["items"][0]
    out["alice_first"], mine = await timed_get(port, "alice", "/v1/sessions?limit=20", repeat)
    assert mine["items"][0]["id"] == "needle", mine["items"][0]
    path = "/v1/sessions?limit=20&q=zyzzyva"
    out["alice_q"], hits = await timed_get(port, "alice", path, repeat)
    assert [i["id"] for i in hits["items"]] == ["needle"], hits
    path = "/v1/sessions?limit=20&q=hello"  # in every session of both owners
    out["alice_q_common"], hits = await timed_get(port, "alice", path, repeat // 4)
    assert len(hits["items"]) == 20, hits
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="files,sqlite,postgres", help="'' for none")
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration")
    parser.add_argument("--open-loop", default="0.5,0.8", help="'' for none")
    parser.add_argument("--pages", default="files,sqlite,postgres,redis", help="'' for none")
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="short runs, 10,000 sessions")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.sessions = 2.0, 10_000
    print(f"code: {SRC}; load average {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench_server_"))
    servers: list[Any] = []
    backends = [b for b in args.backends.split(",") if b]
    page_backends = [b for b in args.pages.split(",") if b]
    fractions = [float(f) for f in args.open_loop.split(",") if f]
    pg_url, redis_url = args.postgres_url, None
    if "postgres" in backends + page_backends and pg_url is None:
        from tests.servers import PostgresServer

        servers.append(PostgresServer(fsync=True))
        servers[-1].start()
        pg_url = servers[-1].url
    if "redis" in page_backends:
        from tests.servers import RedisServer

        servers.append(RedisServer())
        servers[-1].start()
        redis_url = servers[-1].url
    run = uuid.uuid4().hex[:6]

    def location(backend: str, name: str) -> str:
        if backend == "files":
            return str(work / name)
        if backend == "sqlite":
            return f"sqlite:///{work / name}.db"
        if backend == "redis":
            return f"{redis_url}?prefix=bench_{run}_{name}:"
        sep = "&" if "?" in pg_url else "?"
        return f"{pg_url}{sep}schema={name}_{run}"

    rows: list[dict[str, Any]] = []
    try:
        for backend in backends:
            turns_cells(backend, args, location, work, fractions, rows)
        for backend in page_backends:
            where = location(backend, "many")
            started = time.monotonic()
            fill(where, {"alice": 1000, "bob": args.sessions})
            open_store(where).scoped("alice").append(
                "needle", [{"role": "user", "content": "a zyzzyva question"}]
            )
            check(where, "bob", args.sessions)
            print(f"{backend}: filled in {time.monotonic() - started:.0f} s", flush=True)
            server = serve(where, 1, work, keys=API_KEYS)
            try:
                got = asyncio.run(pages(server.port, args.sessions, 20))
            finally:
                server.close()
            rows.append({"store": backend, "sessions": args.sessions, **got})
            print(
                f"{backend:8} GET /v1/sessions among {args.sessions} (median ms): first page "
                f"{got['bob_first']:.1f}, second {got['bob_second']:.1f}; another owner's "
                f"first page {got['alice_first']:.1f}, its q= search {got['alice_q']:.1f} (a "
                f"word in every session: {got['alice_q_common']:.0f})  "
                f"(load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    finally:
        for srv in servers:
            srv.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def turns_cells(
    backend: str,
    args: argparse.Namespace,
    location: Any,
    work: Path,
    fractions: list[float],
    rows: list[dict[str, Any]],
) -> None:
    """The turn cells of one store: closed loop at each client count, then the open loop."""
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
            capacity = 0.0
            for clients in map(int, args.clients.split(",")):
                tag = f"w{workers}c{clients}"
                turns, lat = asyncio.run(load(server.port, clients, args.seconds, tag))
                appends = append_times(location(backend, f"append_{tag}"), 200)
                rows.append({
                    "store": backend, "workers": workers, "clients": clients, "loop": "closed",
                    "turns_per_s": turns / args.seconds,
                    "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                    "append_p50": pct(appends, 0.5), "append_p99": pct(appends, 0.99),
                    "load": os.getloadavg()[0],
                })  # fmt: skip
                r = rows[-1]
                capacity = r["turns_per_s"] if clients == 50 else capacity
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
                    f"{r['p99'] - r['append_p99']:6.1f} ms{versus}   (load {r['load']:.2f})",
                    flush=True,
                )
            for fraction in fractions if capacity else []:
                tag = f"w{workers}o{int(fraction * 100)}"
                rate = fraction * capacity
                got, lat = asyncio.run(open_loop(server.port, 50, rate, args.seconds, tag))
                appends = append_times(location(backend, f"append_{tag}"), 200)
                rows.append({
                    "store": backend, "workers": workers, "clients": 50, "loop": "open",
                    "fraction": fraction, "rate": rate, "turns_per_s": got,
                    "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                    "append_p50": pct(appends, 0.5), "append_p99": pct(appends, 0.99),
                    "load": os.getloadavg()[0],
                })  # fmt: skip
                r = rows[-1]
                print(
                    f"{backend:8} {workers}w open loop, 50 connections at {rate:6.1f}/s "
                    f"({fraction:.0%} of {capacity:.0f}): {got:6.1f} turns/s  p50 "
                    f"{r['p50']:6.1f}  p99 {r['p99']:6.1f} ms   minus store writes p50 "
                    f"{r['p50'] - r['append_p50']:6.1f} p99 {r['p99'] - r['append_p99']:6.1f} ms"
                    f"   (load {r['load']:.2f})",
                    flush=True,
                )
        finally:
            server.close()


if __name__ == "__main__":
    main()

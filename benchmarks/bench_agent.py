"""Agent-loop overhead per turn with FakeProvider, and the import time of ``scratchy``.

Run: ``python benchmarks/bench_agent.py``. "loop" is a turn with sessions kept in memory only
(the agent's own work: history checks, events, bookkeeping); "loop + save" adds the store's
append of the turn to a TOON file. Times are medians in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

from scratchy import Agent, SessionManager
from scratchy.providers.base import ModelResponse, TextDelta, Usage


def history(n: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a helpful AI assistant."}]
    for i in range((n - 1) // 2):
        msgs += [
            {"role": "user", "content": f"question {i} " * 8},
            {"role": "assistant", "content": f"answer {i} " * 30},
        ]
    return msgs[:n]


class QuickProvider:
    """Answers "ok" at once, without FakeProvider's recording (a deep copy per call)."""

    name = "quick"
    model = "quick"

    async def stream(self, messages, tools):  # type: ignore[no-untyped-def]
        yield TextDelta("ok")
        yield ModelResponse({"role": "assistant", "content": "ok"}, Usage(len(messages), 1))


async def turn_ms(n: int, *, save: bool, turns: int = 50) -> float:
    """Median time of a turn in a session of ``n`` messages (it grows by 2 per turn)."""
    directory = tempfile.mkdtemp(prefix="bench_agent_")
    sm = SessionManager(directory) if save else None
    agent = Agent(provider=QuickProvider(), session_manager=sm, autosave=save)
    agent.load_default_tools()
    session = agent.get_session("bench")
    session.messages = history(n)
    agent.save(session)
    await agent.chat("warm-up", session_id="bench")
    times = []
    for i in range(turns):
        t = time.perf_counter()
        await agent.chat(f"turn {i}", session_id="bench")
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def import_ms() -> float:
    runs = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import scratchy"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        total = 0
        for line in out.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
            if m and len(m.group(2)) == 1:  # top-level imports only, cumulative column
                total += int(m.group(1))
        runs.append(total / 1000)
    return statistics.median(runs)


async def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}"
    )
    print(f"{'history':>10} {'loop ms':>9} {'loop + save ms':>15}")
    for n in (10, 10_000):
        loop = await turn_ms(n, save=False)
        saved = await turn_ms(n, save=True, turns=20)
        print(f"{n:>10,} {loop:>9.3f} {saved:>15.2f}")
    print(f"import scratchy (python -X importtime, top-level cumulative): {import_ms():.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())

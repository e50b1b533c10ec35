"""Agent-loop overhead per turn with FakeProvider, and the import time of ``scratchy``.

Run: ``python benchmarks/bench_agent.py``. "loop" is a turn with sessions kept in memory only
(the agent's own work: history checks, events, bookkeeping); "loop + save" adds the store's
append of the turn to a TOON file. Times are medians in milliseconds.

Tracing: the same in-memory turn with tracing off (the default: no OpenTelemetry import) and on
(the SDK's ``TracerProvider`` with ``SimpleSpanProcessor`` and ``InMemorySpanExporter``, so that
exporting each span is counted in the turn), for a one-call turn (2 spans) and a turn with two
tool calls (5 spans); off and on turns alternate, so that load on the machine hits both alike.
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


class TwoToolsProvider:
    """Asks for two tool calls after the user's message, then answers "ok"."""

    name = "quick"
    model = "quick"

    async def stream(self, messages, tools):  # type: ignore[no-untyped-def]
        if messages[-1]["role"] == "user":
            calls = [
                {"id": f"c{i}", "type": "function",
                 "function": {"name": "echo", "arguments": '{"text": "hi"}'}}
                for i in range(2)
            ]  # fmt: skip
            reply = {"role": "assistant", "content": None, "tool_calls": calls}
            yield ModelResponse(reply, Usage(len(messages), 2))
            return
        yield TextDelta("ok")
        yield ModelResponse({"role": "assistant", "content": "ok"}, Usage(len(messages), 1))


def echo(text: str) -> str:
    """Echo the text."""
    return text


async def tracing_ms(provider_cls: type, rounds: int = 400) -> tuple[float, float, float]:
    """Median ms per turn with tracing off and on, and the median of the paired differences."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    agents = {
        mode: Agent(
            provider=provider_cls(),
            autosave=False,
            tools=[echo],
            system_prompt="Hi.",
            tracing=None if mode == "off" else tracer_provider,
        )
        for mode in ("off", "on")
    }
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(rounds + 20):
        for mode, agent in agents.items():
            session = agent.get_session("bench")
            session.messages = session.messages[:1]
            t = time.perf_counter()
            await agent.chat(f"turn {i}", session_id="bench")
            if i >= 20:  # warm-up
                times[mode].append((time.perf_counter() - t) * 1000)
        exporter.clear()
    pairs = [on - off for off, on in zip(times["off"], times["on"], strict=True)]
    return statistics.median(times["off"]), statistics.median(times["on"]), statistics.median(pairs)


def off_hooks_us() -> float:
    """The three hooks' cost per turn with tracing off, in microseconds (timeit)."""
    import timeit

    from scratchy import tracing

    agent = Agent(provider=QuickProvider(), autosave=False)
    call = {"id": "c", "function": {"name": "echo", "arguments": "{}"}}
    stream = object()
    n = 200_000

    def hooks() -> None:
        tracing.trace_turn(agent, "x", "s", stream)  # type: ignore[arg-type]
        tracing.trace_tool(stream, call, agent.tools)  # type: ignore[arg-type]

    per_call = min(timeit.repeat(hooks, number=n, repeat=5)) / n
    chat = min(timeit.repeat(tracing._active.get, number=n, repeat=5)) / n  # trace_chat's check
    return (per_call + chat) * 1e6


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
    os.environ.pop("SCRATCHY_TRACING", None)
    print(f"tracing off: the hooks cost {off_hooks_us():.2f} µs per turn (timeit)")
    print(f"{'tracing, ms per turn':<28} {'off':>7} {'on':>7} {'on - off':>9}")
    for label, cls in (("1 model call (2 spans)", QuickProvider),
                       ("2 tool calls (5 spans)", TwoToolsProvider)):  # fmt: skip
        off, on, extra = await tracing_ms(cls)
        print(f"{label:<28} {off:>7.3f} {on:>7.3f} {extra:>9.3f}")


if __name__ == "__main__":
    asyncio.run(main())

"""Issue 11: saves are correct by construction (explicit versions, content-based change
detection, conflicts that persist until resolved, usage totals under concurrency, store I/O off
the event loop). Every test runs on every store where it applies, on real servers."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scratchy import Agent, SessionManager
from scratchy.errors import SessionConflictError
from scratchy.providers.base import BaseProvider, ModelResponse, TextDelta, Usage
from scratchy.testing import FakeProvider

from .test_store_contract import BACKENDS, Backend, open_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from open_backend(request.param, request, tmp_path)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


APPEND_FROM_B = """
import sys
from scratchy import SessionManager
SessionManager(sys.argv[1]).append_messages(sys.argv[2], [{"role": "user", "content": "from B"}])
"""


def other_process_appends(location: str, sid: str) -> None:
    subprocess.run([sys.executable, "-c", APPEND_FROM_B, location, sid], check=True)


@pytest.mark.parametrize("reader", ["second manager", "search", "list", "agent"])
def test_a_read_elsewhere_never_approves_a_stale_save(backend: Backend, reader: str) -> None:
    """Problem 1: a stale save_session must raise however the process read the session."""
    sm = SessionManager(backend.location)
    sm.save_session("x", [user("one")])
    stale = sm.load_session("x")
    assert stale is not None
    other_process_appends(backend.location, "x")
    if reader == "second manager":
        SessionManager(backend.location).load_session("x")
    elif reader == "search":
        sm.search("one")
    elif reader == "list":
        sm.list_sessions()
    else:
        Agent(
            provider=FakeProvider([]), session_manager=SessionManager(backend.location)
        ).get_session("x")
    stale.append(bot("mine"))
    with pytest.raises(SessionConflictError):
        sm.save_session("x", stale)
    with pytest.raises(SessionConflictError):  # and again: nothing approved it meanwhile
        sm.save_session("x", stale)
    assert [m["content"] for m in SessionManager(backend.location).load_session("x")] == [
        "one",
        "from B",
    ]
    fresh = sm.load_session("x")  # the way out: load again
    assert fresh is not None
    sm.save_session("x", [*fresh, bot("mine")])
    assert len(sm.load_session("x") or []) == 3


async def test_an_in_place_edit_is_saved(backend: Backend) -> None:
    """Problem 2: change detection by content, not identity."""
    sm = SessionManager(backend.location)
    agent = Agent(provider=FakeProvider(["r1", "r2"]), session_manager=sm, system_prompt=None)
    await agent.chat("first", session_id="e")
    session = agent.get_session("e")
    session.messages[0]["content"] = "EDITED"
    assert not session.saved
    await agent.chat("second", session_id="e")
    stored = sm.load_session("e")
    assert stored == session.messages
    assert [m["content"] for m in stored or []] == ["EDITED", "r1", "second", "r2"]
    assert session.saved


async def test_a_conflict_persists_until_reload_or_overwrite(backend: Backend) -> None:
    """Problem 5: after a refused rewrite, the next save must not silently overwrite."""
    sm = SessionManager(backend.location)
    fake = FakeProvider(["r1", "r2", "r3", "r4"])
    agent = Agent(provider=fake, session_manager=sm)
    await agent.chat("q1", session_id="c")
    session = agent.get_session("c")
    session.messages = session.messages[:1]  # a trim
    other_process_appends(backend.location, "c")
    with pytest.raises(SessionConflictError):
        await agent.chat("q2", session_id="c")
    with pytest.raises(SessionConflictError):
        await agent.chat("q3", session_id="c")
    stored = [m["content"] for m in sm.load_session("c") or []]
    assert stored[1:] == ["q1", "r1", "from B"]
    agent.reload("c")
    assert [m["content"] for m in session.messages][1:] == ["q1", "r1", "from B"]
    assert session.saved
    await agent.chat("q4", session_id="c")
    assert [m["content"] for m in sm.load_session("c") or []][1:] == [
        "q1",
        "r1",
        "from B",
        "q4",
        "r4",
    ]


async def test_save_input_stores_the_input_before_the_model_runs(backend: Backend) -> None:
    sm = SessionManager(backend.location)
    seen: list[list[str]] = []

    def reply(messages: list[Any], tools: list[Any]) -> str:
        stored = SessionManager(backend.location).load_session("early") or []
        seen.append([str(m.get("content")) for m in stored if m["role"] == "user"])
        return "ok"

    agent = Agent(provider=FakeProvider(reply), session_manager=sm)
    agent.save_input = True
    await agent.chat("keep me", session_id="early")
    assert seen == [["keep me"]]  # already stored while the model was answering
    session = agent.get_session("early")
    session.messages = session.messages[:1]
    other_process_appends(backend.location, "early")
    calls = len(seen)
    with pytest.raises(SessionConflictError):
        await agent.chat("again", session_id="early")
    assert len(seen) == calls  # the conflict was reported before the model was called


async def test_overwrite_resolves_a_conflict_on_purpose(backend: Backend) -> None:
    sm = SessionManager(backend.location)
    agent = Agent(provider=FakeProvider(["r1"]), session_manager=sm, system_prompt=None)
    await agent.chat("q1", session_id="o")
    session = agent.get_session("o")
    session.messages = [user("only this")]
    other_process_appends(backend.location, "o")
    with pytest.raises(SessionConflictError):
        agent.save(session)
    assert session.messages == [user("only this")]  # memory left as it was
    agent.save(session, overwrite=True)
    assert sm.load_session("o") == [user("only this")] and session.saved


async def test_a_failed_rewrite_leaves_memory_as_it_was(backend: Backend) -> None:
    sm = SessionManager(backend.location)
    agent = Agent(provider=FakeProvider(["r1"]), session_manager=sm, system_prompt=None)
    await agent.chat("q1", session_id="w")
    session = agent.get_session("w")
    before = [dict(m) for m in session.messages]
    other_process_appends(backend.location, "w")
    session.messages.append(bot("local"))  # memory extends an old version: appended, fine
    agent.save(session)
    assert [m["content"] for m in session.messages] == ["q1", "r1", "from B", "local"]
    other_process_appends(backend.location, "w")
    with pytest.raises(SessionConflictError):
        await agent.arewrite(session, [])
    assert session.messages[: len(before)] == before  # the clear did not happen in memory


async def test_whatever_memory_holds_after_a_save_is_stored(backend: Backend) -> None:
    sm = SessionManager(backend.location)
    agent = Agent(provider=FakeProvider(["a", "b", "c"]), session_manager=sm)
    await agent.chat("1", session_id="m")
    session = agent.get_session("m")
    session.messages = [dict(m) for m in session.messages]  # a copy assigned back
    await agent.chat("2", session_id="m")
    assert sm.load_session("m") == session.messages
    session.trim(keep_last=2)
    agent.save(session)
    assert sm.load_session("m") == session.messages
    session.messages[-1]["content"] = "changed"
    agent.save(session)
    assert sm.load_session("m") == session.messages


TURNS_WORKER = """
import asyncio, sys
from scratchy import Agent, SessionManager
from scratchy.providers.base import ModelResponse, Usage
from scratchy.testing import FakeProvider
location, count = sys.argv[1], int(sys.argv[2])
replies = [ModelResponse({"role": "assistant", "content": f"r{i}"}, Usage(10, 1))
           for i in range(count)]
agent = Agent(provider=FakeProvider(replies), session_manager=SessionManager(location))
async def main():
    for i in range(count):
        await agent.chat(f"q{i}", session_id="shared")
asyncio.run(main())
"""


def test_token_totals_add_up_across_processes(backend: Backend) -> None:
    """Problem 6: three processes x 20 turns, 10 input and 1 output token per call."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TURNS_WORKER, backend.location, "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out.decode()
    info = SessionManager(backend.location).session_info("shared")
    assert info is not None
    usage = info.metadata["usage"]
    assert {k: usage[k] for k in ("input_tokens", "output_tokens")} == {
        "input_tokens": 600,
        "output_tokens": 60,
    }
    assert (usage["priced_calls"], usage["cost_nano_usd"]) == (60, 0)  # fake: free, all counted
    assert info.message_count == 1 + 3 * 20 * 2  # one system prompt, every turn once


INTERLEAVE_WORKER = """
import json, random, sys
from scratchy import SessionManager
from scratchy.errors import SessionConflictError
location, worker, seed, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
sm = SessionManager(location)
held = {}
acked = []
stale_refused = 0
for step in range(steps):
    sid = rng.choice(["p", "q"])
    op = rng.random()
    text = f"{worker}-{step}"
    if op < 0.3:
        held[sid] = sm.load_session(sid) or []
    elif op < 0.55:
        sm.append_messages(sid, [{"role": "user", "content": text}])
        acked.append(text)
    elif op < 0.85 and sid in held:
        messages = held.pop(sid) + [{"role": "user", "content": text}]
        try:
            sm.save_session(sid, messages)
            acked.append(text)
        except SessionConflictError:
            stale_refused += 1
    elif op < 0.93:
        sm.search(worker)
    else:
        sm.list_sessions()
print(json.dumps({"acked": acked, "refused": stale_refused}))
"""


def test_random_interleavings_never_lose_or_duplicate_an_acknowledged_message(
    backend: Backend,
) -> None:
    """Several processes load, append, save_session (often stale), search and list the same
    sessions. A save is acknowledged only when it did not drop anything: every acknowledged
    message is stored exactly once at the end, and stale rewrites were refused."""
    import json

    seed = int(os.environ.get("SCRATCHY_TEST_SEED") or random.randrange(1 << 30))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                INTERLEAVE_WORKER,
                backend.location,
                f"w{w}",
                str(seed + w),
                "60",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(4)
    ]
    acked: list[str] = []
    refused = 0
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()
        result = json.loads(out)
        acked += result["acked"]
        refused += result["refused"]
    sm = SessionManager(backend.location)
    stored = [m["content"] for sid in ("p", "q") for m in sm.load_session(sid) or []]
    for text in acked:
        assert stored.count(text) == 1, (seed, text)
    assert len(stored) == len(set(stored)), seed
    assert refused > 0, seed  # the interleaving did produce stale saves


async def test_store_io_never_stalls_the_event_loop(tmp_path: Path) -> None:
    """Problem 3: 20 concurrent turns on 20 sessions of 400 messages (~800 KB each): the
    loop's lag stays at p99 <= 10 ms."""
    sm = SessionManager(tmp_path / "lag")
    big = [user("x" * 2000) if i % 2 == 0 else bot("y" * 2000) for i in range(400)]
    for i in range(20):
        sm.save_session(f"s{i}", big)

    class Quick(BaseProvider):
        """Answers at once, without FakeProvider's recording (a deep copy of every request,
        which would itself stall the loop and hide what this test measures)."""

        async def stream(self, messages, tools):  # type: ignore[no-untyped-def]
            yield TextDelta("ok")
            yield ModelResponse({"role": "assistant", "content": "ok"}, Usage(1, 1))

    agent = Agent(provider=Quick(name="quick", model="quick"), session_manager=sm)
    for i in range(20):
        await agent.aget_session(f"s{i}")

    async def measure(work: bool) -> float:
        """p99 of how late a 1 ms sleep wakes up, during 20 concurrent turns (or idle)."""
        lags: list[float] = []
        done = False

        async def probe() -> None:
            while not done:
                start = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - start - 0.001)

        task = asyncio.create_task(probe())
        if work:
            await asyncio.gather(*(agent.chat("more", session_id=f"s{i}") for i in range(20)))
        else:
            await asyncio.sleep(0.3)
        done = True
        await task
        lags.sort()
        return lags[int(len(lags) * 0.99) - 1]

    # Best of five rounds: a shared machine's scheduling noise comes and goes, while store
    # I/O on the loop (the defect this guards against) stalls every round by far more. The
    # machine's own noise (the idle loop's p99, ~0.1 ms on a quiet machine) is allowed on top.
    rounds = [(await measure(True), await measure(False)) for _ in range(5)]
    p99 = min(r[0] for r in rounds)
    idle = statistics.median(r[1] for r in rounds)
    assert p99 <= 0.010 + idle, f"p99 loop lag {p99 * 1000:.1f} ms (idle {idle * 1000:.1f} ms)"
    assert len(sm.load_session("s0") or []) == 400 + 5 * 2


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("openai:gpt-4o-mini", 128_000),
        ("anthropic:claude-sonnet-4-5", 200_000),
        ("groq:llama-3.1-8b-instant", 131_072),
        ("gemini:gemini-2.0-flash", 1_048_576),
    ],
)
def test_built_in_providers_give_the_agent_a_context_window(
    model: str, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Problem 4: automatic compaction needs no configuration with a built-in provider."""
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, "test-key")
    agent = Agent(model, autosave=False)
    assert agent._context_window() == window
    assert Agent(model, autosave=False, context_window=1000)._context_window() == 1000


async def test_compaction_runs_near_the_providers_window(tmp_path: Path) -> None:
    sm = SessionManager(tmp_path / "c")
    replies = ["summary of the early turns"] + [f"reply {i} " * 40 for i in range(8)]
    fake = FakeProvider(
        lambda messages, tools: (
            replies.pop(0) if "Summarise" in str(messages[0].get("content")) else "short answer"
        ),
        context_window=600,
    )
    agent = Agent(provider=fake, session_manager=sm)
    for i in range(8):
        await agent.chat(f"question {i} " * 30, session_id="long")
    stored = sm.load_session("long") or []
    assert any(m.get("compacted") for m in stored), "no compaction happened"
    assert stored == agent.get_session("long").messages

"""The agent loop with FakeProvider: replies, tools, approval, callbacks, persistence, cancel."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from scratchy import Agent, SessionManager, tool
from scratchy.agent import FinalEvent, ToolCallEvent, ToolResultEvent
from scratchy.errors import MaxTurnsExceeded, ProviderError, SessionConflictError, UsageError
from scratchy.history import validate
from scratchy.providers.base import TextDelta
from scratchy.testing import FakeProvider, UnexpectedModelCall


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: First number.
        b: Second number.
    """
    return a + b


@tool(needs_approval=True)
def launch(target: str) -> str:
    """Launch something risky.

    Args:
        target: What to launch.
    """
    return f"launched {target}"


@pytest.fixture
def sm(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path / "sessions")


def make(sm: SessionManager, *replies, **kw) -> tuple[Agent, FakeProvider]:
    fake = FakeProvider(list(replies))
    return Agent(provider=fake, session_manager=sm, **kw), fake


async def test_chat_returns_reply_and_saves_turn(sm: SessionManager) -> None:
    agent, fake = make(sm, "Hi! How can I help?")
    assert await agent.chat("Hello", session_id="my_project") == "Hi! How can I help?"
    fake.assert_complete()
    stored = sm.load_session("my_project")
    assert [m["role"] for m in stored] == ["system", "user", "assistant"]
    assert stored == agent.get_session("my_project").messages
    assert fake.calls[0].messages[0]["role"] == "system"


async def test_tool_call_round_trip(sm: SessionManager) -> None:
    agent, fake = make(sm, FakeProvider.tool_call("add", a=2, b=3), "2 + 3 = 5", tools=[add])
    events = [e async for e in agent.stream("What is 2 + 3?", session_id="math")]
    kinds = [type(e) for e in events]
    assert ToolCallEvent in kinds and ToolResultEvent in kinds and kinds[-1] is FinalEvent
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.content == "5" and not result.is_error
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "2 + 3 = 5"
    assert fake.calls[0].tools[0]["function"]["name"] == "add"
    assert fake.calls[1].messages[-1] == {
        "role": "tool",
        "tool_call_id": fake.calls[1].messages[-2]["tool_calls"][0]["id"],
        "content": "5",
        "name": "add",
    }
    assert validate(sm.load_session("math")) == []


async def test_tool_errors_reach_the_model(sm: SessionManager) -> None:
    @tool
    def broken(x: int) -> int:
        """Always fails.

        Args:
            x: Ignored.
        """
        raise RuntimeError("disk on fire")

    agent, fake = make(
        sm,
        FakeProvider.tool_call("broken", x=1),
        FakeProvider.tool_call("nope"),
        FakeProvider.tool_call("add", a="x"),
        "done",
        tools=[broken, add],
    )
    assert await agent.chat("go") == "done"
    results = [m["content"] for m in agent.get_session().messages if m["role"] == "tool"]
    assert "disk on fire" in results[0] and results[0].startswith("Error")
    assert "no tool named 'nope'" in results[1] and "broken, add" in results[1]
    assert results[2].startswith("Error") and "a" in results[2]


async def test_approval_policies(sm: SessionManager) -> None:
    agent, _ = make(sm, FakeProvider.tool_call("launch", target="x"), "ok", tools=[launch])
    await agent.chat("go", session_id="ask-none")
    assert "did not approve" in agent.get_session("ask-none").messages[-2]["content"]

    asked = []

    def approve(name: str, args: dict) -> str:
        asked.append((name, args))
        return "always"

    agent, _ = make(
        sm,
        FakeProvider.tool_call("launch", target="a"),
        "ok",
        FakeProvider.tool_call("launch", target="b"),
        "ok",
        tools=[launch],
        on_tool_approval=approve,
    )
    await agent.chat("go", session_id="ask")
    await agent.chat("again", session_id="ask")
    assert asked == [("launch", {"target": "a"})]  # "always" remembered
    tool_msgs = [m for m in agent.get_session("ask").messages if m["role"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["launched a", "launched b"]

    agent, _ = make(
        sm,
        FakeProvider.tool_call("launch", target="x"),
        "ok",
        tools=[launch],
        tool_approval="allow",
    )
    await agent.chat("go", session_id="allow")
    assert agent.get_session("allow").messages[-2]["content"] == "launched x"
    with pytest.raises(UsageError, match="tool_approval"):
        Agent(provider=FakeProvider(), tool_approval="maybe")  # type: ignore[arg-type]


async def test_callbacks_in_order(sm: SessionManager) -> None:
    seen: list[tuple[str, object]] = []

    async def on_token(t: str) -> None:
        seen.append(("token", t))

    agent, _ = make(
        sm,
        FakeProvider.tool_call("add", a=1, b=1),
        "two",
        tools=[add],
        on_token=on_token,
        on_tool_start=lambda n, a: seen.append(("start", n)),
        on_tool_end=lambda n, r: seen.append(("end", r.content)),
        on_final_message=lambda t: seen.append(("final", t)),
    )
    await agent.chat("1+1")
    assert seen == [("start", "add"), ("end", "2"), ("token", "two"), ("final", "two")]


async def test_max_iterations(sm: SessionManager) -> None:
    agent, _ = make(
        sm,
        FakeProvider.tool_call("add", a=1, b=1),
        FakeProvider.tool_call("add", a=1, b=1),
        tools=[add],
        max_iterations=2,
    )
    with pytest.raises(MaxTurnsExceeded, match="max_iterations"):
        await agent.chat("loop")
    assert validate(sm.load_session("default")) == []


async def test_duplicate_or_missing_call_ids_are_made_unique(sm: SessionManager) -> None:
    same = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": "{}"}}
        ],
    }
    empty = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "", "type": "function", "function": {"name": "add", "arguments": "{}"}}
        ],
    }
    agent, _ = make(sm, same, "a", same, "b", empty, "c", tools=[add])
    for q in ("1", "2", "3"):
        await agent.chat(q, session_id="ids")
    history = sm.load_session("ids")
    assert validate(history) == []
    ids = [c["id"] for m in history for c in m.get("tool_calls") or []]
    assert len(set(ids)) == 3 and all(ids)


async def test_provider_error_keeps_user_message_and_valid_history(sm: SessionManager) -> None:
    agent, _ = make(sm, ProviderError("boom", provider="fake", status=500))
    with pytest.raises(ProviderError):
        await agent.chat("hello", session_id="err")
    assert sm.load_session("err")[-1] == {"role": "user", "content": "hello"}


async def test_cancel_during_tool_leaves_valid_history(sm: SessionManager) -> None:
    started = asyncio.Event()

    @tool
    async def slow(seconds: float) -> str:
        """Sleep.

        Args:
            seconds: How long.
        """
        started.set()
        await asyncio.sleep(seconds)
        return "woke"

    agent, _ = make(
        sm,
        FakeProvider.tool_calls(("slow", {"seconds": 30}), ("add", {"a": 1, "b": 2})),
        tools=[slow, add],
    )
    task = asyncio.create_task(agent.chat("sleep", session_id="cancel"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for history in (agent.get_session("cancel").messages, sm.load_session("cancel")):
        assert validate(history) == []
        assert history[-1]["content"].startswith("Error: cancelled")
        assert len([m for m in history if m["role"] == "tool"]) == 2


async def test_cancel_during_streamed_reply(sm: SessionManager) -> None:
    fake = FakeProvider(["a long answer " * 20], delay=0.01, chunk=3)
    agent = Agent(provider=fake, session_manager=sm)
    task = asyncio.create_task(agent.chat("talk", session_id="stream"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sm.load_session("stream")[-1] == {"role": "user", "content": "talk"}


async def test_session_resumes_from_disk_in_a_new_agent(sm: SessionManager) -> None:
    agent, _ = make(sm, "first")
    await agent.chat("one", session_id="r")
    agent2, fake2 = make(sm, "second")
    assert len(agent2.get_session("r").messages) == 3
    await agent2.chat("two", session_id="r")
    assert [m["content"] for m in fake2.calls[0].messages][1:] == ["one", "first", "two"]
    assert len(sm.load_session("r")) == 5


async def test_two_agents_share_a_session_without_losing_messages(tmp_path: Path) -> None:
    from scratchy.stores.toon_files import TOONFileStore

    d = tmp_path / "s"
    a = Agent(
        provider=FakeProvider(["a1", "a2"]), session_manager=SessionManager(store=TOONFileStore(d))
    )
    b = Agent(provider=FakeProvider(["b1"]), session_manager=SessionManager(store=TOONFileStore(d)))
    a.get_session("shared")
    b.get_session("shared")  # both start the session in memory before either saves
    await a.chat("from a", session_id="shared")
    await b.chat("from b", session_id="shared")
    await a.chat("a again", session_id="shared")  # a picks up b's turn first
    contents = [m["content"] for m in SessionManager(d).load_session("shared")]
    assert contents[1:] == ["from a", "a1", "from b", "b1", "a again", "a2"]
    assert b.get_session("shared").messages[0]["role"] == "system"  # one system prompt
    usage = SessionManager(d).session_info("shared").metadata["usage"]
    assert usage["output_tokens"] == 3  # both processes' token counts add up


async def test_docs_manual_save_and_slice_stay_valid(sm: SessionManager) -> None:
    agent, _ = make(sm, FakeProvider.tool_call("add", a=1, b=2), "3", "again", tools=[add])
    await agent.chat("add", session_id="big")
    session = agent.get_session("big")
    sm.save_session("big", session.messages)  # the docs' manual save is harmless
    session.messages = session.messages[-2:]  # a slice that starts at a tool result
    sm.save_session("big", session.messages)
    await agent.chat("more", session_id="big")
    stored = sm.load_session("big")
    assert stored[0]["role"] == "tool" and stored[-1]["content"] == "again"


async def test_clear_keeps_system(sm: SessionManager) -> None:
    agent, _ = make(sm, "x")
    await agent.chat("hi", session_id="c")
    session = agent.get_session("c")
    session.clear()
    assert [m["role"] for m in session.messages] == ["system"]
    agent.save(session)
    assert sm.load_session("c") == session.messages
    session.clear(keep_system=False)
    assert session.messages == []


async def test_fake_provider_fails_on_unexpected_call(sm: SessionManager) -> None:
    agent, fake = make(sm)
    with pytest.raises(UnexpectedModelCall, match="script is used up"):
        await agent.chat("hello")
    fake.enqueue("unused")
    with pytest.raises(AssertionError, match="never requested"):
        fake.assert_complete()


async def test_usage_is_counted_and_saved(sm: SessionManager) -> None:
    agent, _ = make(sm, "one two three")
    await agent.chat("count these words", session_id="u")
    usage = agent.get_session("u").metadata["usage"]
    assert usage["output_tokens"] == 3 and usage["input_tokens"] > 0
    assert sm.session_info("u").metadata["usage"] == usage


async def test_autosave_off_keeps_sessions_in_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    agent = Agent(provider=FakeProvider(["x"]), autosave=False)
    await agent.chat("hi")
    assert not (tmp_path / "scratchy").exists()
    assert json.dumps(agent.get_session().messages)


async def test_guide_reassignment_then_another_process_appends(tmp_path: Path) -> None:
    """``session.messages = sm.load_session(...)`` and then another writer: nothing is lost."""
    from scratchy.stores.toon_files import TOONFileStore

    d = tmp_path / "s"
    sm = SessionManager(d)
    sm.save_session(
        "p",
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "1"},
            {"role": "assistant", "content": "one"},
        ],
    )
    agent = Agent(provider=FakeProvider(["two"]), session_manager=sm)
    session = agent.get_session("p")
    session.messages = sm.load_session("p")  # the guide's Session Persistence pattern
    other = SessionManager(store=TOONFileStore(d))
    other.append_messages("p", [{"role": "user", "content": "from elsewhere"}])
    await agent.chat("2", session_id="p")
    contents = [m["content"] for m in sm.load_session("p")]
    assert contents == ["sys", "1", "one", "from elsewhere", "2", "two"]
    assert [m["content"] for m in session.messages] == contents
    # a real divergence (cleared here, appended there) is reported, not silently merged
    session.clear()
    other.append_messages("p", [{"role": "user", "content": "again elsewhere"}])
    with pytest.raises(SessionConflictError):
        agent.save(session)


async def test_token_totals_are_not_counted_twice(sm: SessionManager) -> None:
    agent, _ = make(sm, "one", "two three", "four")
    for q in ("a", "b", "c"):
        await agent.chat(q, session_id="t")
    assert agent.get_session("t").metadata["usage"]["output_tokens"] == 4
    assert sm.session_info("t").metadata["usage"]["output_tokens"] == 4


async def test_a_refused_approval_in_library_mode_warns_once_per_tool(
    sm: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    from scratchy.tools import tool

    @tool(needs_approval=True)
    def wipe(path: str) -> str:
        """Delete a path.

        Args:
            path: What to delete.
        """
        return "deleted"

    agent = Agent(
        provider=FakeProvider(
            [
                FakeProvider.tool_call("wipe", path="a"),
                "no",
                FakeProvider.tool_call("wipe", path="b"),
                "no",
            ]
        ),
        session_manager=sm,
        tools=[wipe],
    )
    with caplog.at_level("WARNING", logger="scratchy"):
        await agent.chat("wipe a", session_id="lib")
        await agent.chat("wipe b", session_id="lib")
    warnings = [r.getMessage() for r in caplog.records if "needs approval" in r.getMessage()]
    assert len(warnings) == 1
    assert 'tool_approval="allow"' in warnings[0] and "on_tool_approval" in warnings[0]
    results = [m for m in agent.get_session("lib").messages if m["role"] == "tool"]
    assert all("did not approve" in m["content"] for m in results)

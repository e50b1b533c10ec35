"""History validity: any slice, trim or compaction, once repaired, is a history providers take."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from scratchy import Agent, SessionManager
from scratchy.history import (
    compact,
    compaction_split,
    estimate_tokens,
    repair,
    trim,
    uncompact,
    validate,
)
from scratchy.providers.anthropic import to_anthropic
from scratchy.providers.openai_compat import clean_messages
from scratchy.testing import FakeProvider

SYSTEM = {"role": "system", "content": "sys"}


@st.composite
def histories(draw) -> list[dict]:
    """Valid conversations: user turns, assistant replies, tool calls with their results."""
    messages = [SYSTEM] if draw(st.booleans()) else []
    n = 0
    for _ in range(draw(st.integers(0, 8))):
        messages.append({"role": "user", "content": draw(st.text(max_size=10))})
        for _ in range(draw(st.integers(0, 2))):
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                n += 1
                calls.append(
                    {
                        "id": f"c{n}",
                        "type": "function",
                        "function": {"name": "t", "arguments": "{}"},
                    }
                )
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            for c in calls:
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": "ok"})
        messages.append({"role": "assistant", "content": draw(st.text(max_size=10))})
    return messages


def provider_ready(messages: list[dict]) -> None:
    assert validate(messages) == []
    clean_messages(messages)
    system, converted = to_anthropic(messages)
    for m in converted:  # every tool_result answers a tool_use of the message before it
        if m["role"] == "user" and isinstance(m["content"], list):
            for block in m["content"]:
                if block.get("type") == "tool_result":
                    before = converted[converted.index(m) - 1]
                    ids = {b["id"] for b in before["content"] if b.get("type") == "tool_use"}
                    assert block["tool_use_id"] in ids


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_any_slice_repairs_to_a_valid_history(history, data) -> None:
    assert validate(history) == []
    i = data.draw(st.integers(0, len(history)))
    j = data.draw(st.integers(i, len(history)))
    piece = history[i:j]
    fixed = repair(piece)
    provider_ready(fixed)
    assert repair(fixed) == fixed  # idempotent


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 30))
def test_trim_never_splits_tool_calls(history, keep) -> None:
    trimmed = trim(history, keep)
    provider_ready(trimmed)
    if history and history[0]["role"] == "system":
        assert trimmed[0] == SYSTEM
    assert len(trimmed) <= max(len(history), 1)


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 12))
def test_compaction_is_valid_and_reversible(history, keep) -> None:
    start, end = compaction_split(history, keep)
    compacted = compact(history, "summary", start, end)
    provider_ready(repair(compacted))
    assert uncompact(compacted) == history
    twice = compact(compacted, "again", *compaction_split(compacted, 0))
    assert uncompact(twice) == history


def test_validate_names_problems() -> None:
    bad = [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "zz", "content": "orphan"},
        {"role": "system", "content": "late"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "t", "arguments": "{}"}}
            ],
        },
    ]
    kinds = [(p.index, p.kind) for p in validate(bad)]
    assert kinds == [(1, "orphan-result"), (2, "system-not-first"), (3, "unanswered-call")]
    fixed = repair(bad)
    assert [m["role"] for m in fixed] == ["system", "user", "assistant", "tool"]
    assert fixed[-1]["content"].startswith("Error: this tool call was cancelled")


def test_estimate_tokens_grows_with_text() -> None:
    assert estimate_tokens([{"role": "user", "content": "x" * 400}]) > 100


async def test_agent_compact_and_session_trim(tmp_path: Path) -> None:
    sm = SessionManager(tmp_path)
    fake = FakeProvider([f"answer {i}" for i in range(6)] + ["SUMMARY: we talked", "fine"])
    agent = Agent(provider=fake, session_manager=sm)
    for i in range(6):
        await agent.chat(f"question {i}", session_id="long")
    before = list(agent.get_session("long").messages)
    folded = await agent.compact("long", keep_last=4)
    assert folded == 8
    session = agent.get_session("long")
    assert session.messages[1]["content"].startswith("Summary of the earlier conversation:")
    assert "SUMMARY: we talked" in session.messages[1]["content"]
    assert uncompact(session.messages) == before
    assert "question 0" in fake.calls[6].messages[1]["content"]  # the model saw the transcript
    stored = sm.load_session("long")
    assert uncompact(stored) == before and len(stored) == 6
    await agent.chat("after", session_id="long")
    sent = fake.calls[-1].messages
    assert len(sent) == 7 and "compacted" in sent[1]  # the provider adapter drops it
    assert "compacted" not in json.dumps(clean_messages(sent))
    session.trim(keep_last=2)
    agent.save(session)
    assert [m["role"] for m in sm.load_session("long")] == ["system", "user", "assistant"]


async def test_auto_compaction_near_the_context_window(tmp_path: Path) -> None:
    fake = FakeProvider(["x" * 400, "y" * 400, "short summary", "z"])
    agent = Agent(provider=fake, session_manager=SessionManager(tmp_path), context_window=300)
    await agent.chat("a" * 400)
    await agent.chat("b" * 400)
    await agent.chat("c")  # the history is now > 80% of 300 tokens: compacted first
    assert fake.calls[2].messages[0]["content"].startswith("Summarise the conversation")
    messages = agent.get_session().messages
    assert messages[1]["content"].endswith("short summary")

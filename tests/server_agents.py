"""Agents the server tests start ``scratchy serve --agent tests.server_agents:NAME`` with.

All use scripted models (``FakeProvider``): the tests measure the server, never a model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from scratchy import Agent
from scratchy.errors import ProviderError
from scratchy.testing import FakeProvider
from scratchy.tools import Tool


def _echo(messages: list[dict[str, Any]], tools: Any) -> str:
    return f"You said: {messages[-1].get('content')}"


def slow() -> Agent:
    """Echoes, one character every ``$SCRATCHY_TEST_DELAY`` seconds (default 0.02)."""
    delay = float(os.environ.get("SCRATCHY_TEST_DELAY", "0.02"))
    return Agent(provider=FakeProvider(_echo, delay=delay, chunk=1), system_prompt="Be brief.")


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def write_note(text: str) -> str:
    """Write a note to notes.txt (changes files: needs approval).

    Args:
        text: What to write.
    """
    Path("notes.txt").write_text(text, encoding="utf-8")
    return "written"


def _tool_script(messages: list[dict[str, Any]], tools: Any) -> Any:
    last = messages[-1]
    if last.get("role") == "user":
        text = str(last.get("content"))
        if "note" in text:
            return FakeProvider.tool_call("write_note", text=text)
        return FakeProvider.tool_call("add", a=2, b=3)
    return f"The tool said: {last.get('content')}"


def tools() -> Agent:
    """Calls ``add`` (or ``write_note``, which needs approval, when asked for a note)."""
    note = Tool.from_function(write_note, needs_approval=True)
    return Agent(provider=FakeProvider(_tool_script), tools=[add, note], system_prompt=None)


def failing() -> Agent:
    """Its model provider always fails."""
    error = ProviderError("upstream model said no (HTTP 500)", provider="fake", status=500)
    return Agent(provider=FakeProvider(lambda m, t: error), system_prompt=None)


def _pid_script(messages: list[dict[str, Any]], tools: Any) -> Any:
    last = messages[-1]
    if last.get("role") == "user" and "hang" in str(last.get("content")):
        return FakeProvider.tool_call("hang")
    return "done"


def hang() -> str:
    """Write this worker's pid to $SCRATCHY_TEST_PID_FILE, then wait a long time."""
    Path(os.environ["SCRATCHY_TEST_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(60)
    return "woke up"


def hanging() -> Agent:
    """Asked to "hang", calls a tool that blocks its worker for a minute (to be killed)."""
    return Agent(provider=FakeProvider(_pid_script), tools=[hang], system_prompt=None)


async def wait_a_while(seconds: float = 30.0) -> str:
    """Wait (a tool still running when its turn is cancelled).

    Args:
        seconds: How long.
    """
    import asyncio

    await asyncio.sleep(seconds)
    return "waited"


def _cancel_script(messages: list[dict[str, Any]], tools: Any) -> Any:
    last = messages[-1]
    if last.get("role") == "user" and "wait" in str(last.get("content")):
        return FakeProvider.tool_call("wait_a_while")
    if last.get("role") == "tool":
        return "the tool is done"
    return f"You said: {last.get('content')}"


def cancellable() -> Agent:
    """Echoes one character every 0.05 s; asked to "wait", calls a tool that waits 30 s."""
    return Agent(
        provider=FakeProvider(_cancel_script, delay=0.05, chunk=1),
        tools=[wait_a_while],
        system_prompt=None,
    )

"""An agent with memory for ``scratchy serve --agent tests.memory_agents:remembering``.

The scripted model remembers what follows ``remember: `` (with the ``remember`` tool) and
otherwise answers with the memories block it was sent, or ``no memories``.
"""

from __future__ import annotations

from typing import Any

from scratchy import Agent
from scratchy.memory import MEMORY_HEADER
from scratchy.testing import FakeProvider


def _reply(messages: list[dict[str, Any]], tools: Any) -> Any:
    last = messages[-1]
    if last["role"] == "user" and str(last["content"]).startswith("remember: "):
        return FakeProvider.tool_call("remember", text=last["content"][len("remember: ") :])
    if last["role"] == "tool":
        return last["content"]
    blocks = [
        m["content"]
        for m in messages
        if m["role"] == "system" and str(m["content"]).startswith(MEMORY_HEADER)
    ]
    return blocks[0] if blocks else "no memories"


remembering = Agent(provider=FakeProvider(_reply), memory=True, autosave=False)
"""A template agent: the server copies it for each owner."""

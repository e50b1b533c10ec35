"""The agent ``bench_server.py`` serves: an echo model that answers at once and keeps nothing.

(``fake:`` records every call with a deep copy of the history, which is right for tests and
would make a benchmark measure the copying.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from scratchy import Agent
from scratchy.providers.base import ModelResponse, TextDelta, Usage


class EchoProvider:
    """Answers ``You said: <last message>`` in 8-character deltas."""

    name = "echo"
    model = "echo"

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[Any]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        text = f"You said: {messages[-1].get('content')}"
        for i in range(0, len(text), 8):
            yield TextDelta(text[i : i + 8])
        yield ModelResponse({"role": "assistant", "content": text}, usage=Usage(10, 3))


def agent() -> Agent:
    """A new agent with the echo model and the default system prompt."""
    return Agent(provider=EchoProvider(), autosave=False)

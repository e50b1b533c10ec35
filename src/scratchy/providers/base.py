"""The small Provider protocol every model backend implements.

A provider turns the session's OpenAI-shaped messages and tool schemas into one vendor request
and streams the answer back as :class:`TextDelta` events followed by one :class:`ModelResponse`.
Translation to the vendor's own format happens inside each adapter only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..messages import Message


@dataclass(slots=True)
class Usage:
    """Token counts reported by the provider for one model call."""

    input_tokens: int = 0
    """Prompt tokens."""
    output_tokens: int = 0
    """Completion tokens."""


@dataclass(slots=True)
class TextDelta:
    """A piece of the assistant's text, as it streams in."""

    text: str


@dataclass(slots=True)
class ModelResponse:
    """The complete answer of one model call."""

    message: Message
    """An assistant message (``content`` and optional ``tool_calls``) in the OpenAI shape."""
    usage: Usage | None = None
    finish_reason: str | None = None
    raw: Any = field(default=None, repr=False)
    """The vendor's own response object, for debugging."""


ToolSchema = dict[str, Any]
"""An OpenAI function-tool schema: ``{"type": "function", "function": {name, description,
parameters}}``."""


@runtime_checkable
class Provider(Protocol):
    """A model backend. ``stream`` yields ``TextDelta``s, then exactly one ``ModelResponse``."""

    name: str
    """Provider name as used in ``"provider:model"`` (``openai``, ``anthropic``, ``local``...)."""
    model: str
    """The model name sent to the vendor."""

    def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Send one request and stream the answer."""
        ...


async def complete(
    provider: Provider, messages: list[Message], tools: list[ToolSchema] | None = None
) -> ModelResponse:
    """Run ``provider.stream`` to the end and return its ``ModelResponse``."""
    final: ModelResponse | None = None
    async for event in provider.stream(messages, tools or []):
        if isinstance(event, ModelResponse):
            final = event
    if final is None:
        from ..errors import ModelBehaviorError

        raise ModelBehaviorError(
            f"{provider.name} ended its stream without a response; try again",
            provider=provider.name,
        )
    return final

"""Test helpers: :class:`FakeProvider`, a scripted model for tests of code built on Scratchy.

Example::

    from scratchy import Agent
    from scratchy.testing import FakeProvider

    fake = FakeProvider([
        FakeProvider.tool_call("add", a=1, b=2),   # the model asks for a tool
        "1 + 2 = 3",                           # then answers
    ])
    agent = Agent(provider=fake)
    assert await agent.chat("What is 1 + 2?") == "1 + 2 = 3"
    fake.assert_complete()
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .messages import Message, ToolCall
from .providers.base import BaseProvider, ModelResponse, TextDelta, ToolSchema, Usage

Reply = str | dict[str, Any] | ModelResponse | BaseException
"""A scripted reply: text, an assistant message dict, a full response, or an error to raise."""

_ids = itertools.count(1)

DEFAULT_KEEP_CALLS = 1000
"""Calls a :class:`FakeProvider` keeps by default (a long run never grows without bound)."""
SPEC_KEEP_CALLS = 20
"""Calls a ``fake:`` model keeps (a long ``scratchy serve --model fake:`` stays small)."""

_SCRIPT_HINT = (
    'use fake: (echo) or fake:PATH to a JSON list of replies, e.g. ["Hello!", {"content": "Done."}]'
)


def _read_script(spec: str) -> Any:
    """The JSON of a ``fake:PATH`` script; a missing, unreadable or invalid file is one clear
    :class:`~scratchy.errors.UsageError`."""
    path = Path(spec).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"fake model script {spec} does not exist: {_SCRIPT_HINT}") from None
    except IsADirectoryError:
        raise UsageError(f"fake model script {spec} is a directory: {_SCRIPT_HINT}") from None
    except UnicodeDecodeError:
        raise UsageError(f"fake model script {spec} is not UTF-8 text: {_SCRIPT_HINT}") from None
    except OSError as exc:
        raise UsageError(
            f"fake model script {spec} cannot be read ({exc.strerror or exc})"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"fake model script {spec} is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg}): {_SCRIPT_HINT}"
        ) from None


class UnexpectedModelCall(AssertionError):
    """The code under test called the model more often than the script allows."""


@dataclass(slots=True)
class FakeCall:
    """One recorded model call: the messages and tool schemas the provider received."""

    messages: list[Message]
    tools: list[ToolSchema]

    @property
    def last_user_text(self) -> str:
        """The text of the last user message sent."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return str(msg.get("content") or "")
        return ""


class FakeProvider(BaseProvider):
    """A scripted :class:`~scratchy.providers.base.Provider` that records its calls.

    Args:
        replies: Replies given in order (see :data:`Reply`), or a function
            ``fn(messages, tools) -> Reply`` called for every request.
        delay: Seconds to wait between streamed chunks (to test cancellation).
        chunk: Characters per streamed text delta.
        context_window: The context window it reports (to test compaction); ``None``: unknown.
        supports_tools: What it reports as ``supports_tools`` (it records the tools either way).
        can_stream: ``False``: yield each reply as one ``ModelResponse``, with no ``TextDelta``.
        name: The provider name it reports (``"openai"`` with ``model="gpt-4o-mini"`` makes
            its calls priced like that model's, to test costs; see :mod:`scratchy.cost`).
        keep_calls: How many of the latest calls :attr:`calls` keeps (each is a deep copy of
            the history sent); ``None``: all. :attr:`call_count` counts every call. ``fake:``
            models (``scratchy serve --model fake:``) keep :data:`SPEC_KEEP_CALLS`.
    """

    def __init__(
        self,
        replies: list[Reply] | Callable[[list[Message], list[ToolSchema]], Reply] | None = None,
        *,
        model: str = "fake-model",
        delay: float = 0.0,
        chunk: int = 8,
        context_window: int | None = None,
        supports_tools: bool = True,
        can_stream: bool = True,
        name: str = "fake",
        keep_calls: int | None = DEFAULT_KEEP_CALLS,
    ) -> None:
        super().__init__(name=name, model=model, context_window=context_window)
        self.supports_tools = supports_tools
        self.can_stream = can_stream
        self.closed = 0
        """How many times :meth:`aclose` was awaited."""
        self.delay = delay
        self.chunk = max(1, chunk)
        self._fn = replies if callable(replies) else None
        self.replies: list[Reply] = [] if callable(replies) or replies is None else list(replies)
        self.calls: list[FakeCall] = []
        """The latest calls, oldest first (at most ``keep_calls``)."""
        self.call_count = 0
        """How many calls were made (all of them, kept or not)."""
        self.keep_calls = keep_calls

    @classmethod
    def from_spec(cls, spec: str = "", **options: Any) -> FakeProvider:
        """The provider behind ``Agent(model="fake:...")`` (for scripted end-to-end runs).

        ``fake:`` echoes (``You said: <text>``); ``fake:/path/script.json`` gives the replies of
        a JSON list (strings, or assistant message dicts with ``tool_calls`` and optionally
        ``usage``: ``{"input_tokens": 1000, "output_tokens": 20}``), in order, or of an object
        ``{"replies": [...], "delay": seconds, "chunk": characters}`` (also ``"name"`` and
        ``"model"``: the provider and model it reports, e.g. to be priced like a vendor's).
        """
        if spec:
            script = _read_script(spec)
            if isinstance(script, dict):  # {"replies": [...], "delay": 0.05, "chunk": 4}
                keys = ("delay", "chunk", "name", "model")
                options = {**{k: script[k] for k in keys if k in script}, **options}
                script = script.get("replies")
            if not isinstance(script, list):
                raise UsageError(
                    f"fake model script {spec}: expected a JSON list of replies, or an object "
                    "with 'replies' (and optional 'delay', 'chunk')"
                )
            return cls(script, **{"keep_calls": SPEC_KEEP_CALLS, **options})
        options.setdefault("keep_calls", SPEC_KEEP_CALLS)
        return cls(lambda messages, tools: f"You said: {messages[-1].get('content')}", **options)

    @staticmethod
    def tool_call(name: str, /, **arguments: Any) -> dict[str, Any]:
        """An assistant message asking for one tool call (use in ``replies``)."""
        return FakeProvider.tool_calls((name, arguments))

    @staticmethod
    def tool_calls(*calls: tuple[str, dict[str, Any]], text: str | None = None) -> dict[str, Any]:
        """An assistant message asking for several tool calls at once."""
        tool_calls: list[ToolCall] = [
            {
                "id": f"call_{next(_ids)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in calls
        ]
        return {"role": "assistant", "content": text, "tool_calls": tool_calls}

    def enqueue(self, *replies: Reply) -> None:
        """Add replies to the end of the script."""
        self.replies.extend(replies)

    def assert_complete(self) -> None:
        """Fail when scripted replies were not used."""
        if self.replies:
            raise AssertionError(
                f"{len(self.replies)} scripted replies were never requested: {self.replies!r}"
            )

    async def aclose(self) -> None:
        """Count the close (tests check that a replaced provider was closed)."""
        self.closed += 1

    def _next(self, messages: list[Message], tools: list[ToolSchema]) -> Reply:
        if self._fn is not None:
            return self._fn(messages, tools)
        if not self.replies:
            raise UnexpectedModelCall(
                f"FakeProvider got model call #{self.call_count} but its script is used up; "
                f"last user message: {FakeCall(messages, tools).last_user_text!r}"
            )
        return self.replies.pop(0)

    async def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Record the call and stream the next scripted reply."""
        self.call_count += 1
        keep = self.keep_calls
        if keep is None or keep > 0:
            self.calls.append(FakeCall(copy.deepcopy(messages), copy.deepcopy(tools)))
            if keep is not None and len(self.calls) > keep:
                del self.calls[: len(self.calls) - keep]
        reply = self._next(messages, tools)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ModelResponse):
            response = reply
        elif isinstance(reply, str):
            response = ModelResponse({"role": "assistant", "content": reply})
        else:
            reply = dict(reply)
            counts = reply.pop("usage", None)  # {"input_tokens": 1000, "output_tokens": 20}
            response = ModelResponse(
                {"role": "assistant", "content": None, **reply}, _scripted_usage(counts)
            )
        text = response.message.get("content")
        if isinstance(text, str) and self.can_stream:
            for i in range(0, len(text), self.chunk):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield TextDelta(text[i : i + self.chunk])
        elif self.delay:
            await asyncio.sleep(self.delay)
        if response.usage is None:
            words = sum(len(str(m.get("content") or "").split()) for m in messages)
            response.usage = Usage(words, len(str(text or "").split()))
        yield response


def _scripted_usage(counts: Any) -> Usage | None:
    """The ``usage`` of a scripted reply dict as a :class:`Usage` (None: none given)."""
    if counts is None:
        return None
    fields = Usage.__dataclass_fields__
    if not isinstance(counts, dict) or not all(
        k in fields and isinstance(v, int) and v >= 0 for k, v in counts.items()
    ):
        raise UsageError(
            f"a scripted reply's usage must map {', '.join(fields)} to whole numbers, not "
            f"{counts!r}"
        )
    return Usage(**counts)


def fake_provider(model: str | None = None, *, name: str = "fake", **options: Any) -> FakeProvider:
    """Registry entry of ``"fake:..."`` models (see :meth:`FakeProvider.from_spec`)."""
    provider = FakeProvider.from_spec(model or "", **options)
    provider.settings = dict(options)
    return provider

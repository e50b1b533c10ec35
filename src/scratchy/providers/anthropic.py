"""Anthropic's Messages API through the official ``anthropic`` SDK.

Sessions keep OpenAI-shaped messages; this adapter translates them both ways, and the pure
functions doing it (:func:`to_anthropic`, :func:`from_anthropic`, :func:`tools_to_anthropic`) sit
at module level so that they can be tested without a network:

- ``system`` messages become the ``system`` parameter (joined with blank lines);
- assistant ``tool_calls`` become ``tool_use`` blocks whose ``input`` is the parsed arguments;
- ``tool`` messages become ``tool_result`` blocks inside a user message;
- consecutive messages of the same role are merged, as the API requires alternating roles;
- ``tool_use`` blocks in the answer become OpenAI ``tool_calls`` with JSON-encoded arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..errors import MissingCredentialsError, ProviderError
from ..messages import Message, text_of
from ._client import SDKProvider
from ._windows import known_context_window
from .base import ModelResponse, TextDelta, ToolSchema, Usage

__all__ = ["AnthropicProvider", "from_anthropic", "to_anthropic", "tools_to_anthropic"]

DEFAULT_MODEL = "claude-sonnet-4-6"
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def _field(obj: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict or an SDK object alike."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _tool_input(arguments: Any) -> dict[str, Any]:
    """Parse OpenAI ``arguments`` into the JSON object Anthropic requires as ``input``."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        # The model sent broken JSON earlier (and was told so); keep it visible to the model.
        return {"_raw_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"value": value}


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": header or "image/png", "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI ``content`` (string, parts or None) as Anthropic content blocks, minus empty text."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and str(part.get("text", "")).strip():
            blocks.append({"type": "text", "text": str(part["text"])})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if isinstance(url, str):
                blocks.append(_image_block(url))
    return blocks


def to_anthropic(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[str | None, list[dict[str, Any]]]:
    """Translate OpenAI-shaped messages into Anthropic's ``(system, messages)``.

    Args:
        messages: The conversation in the OpenAI chat shape.

    Returns:
        The system prompt (``None`` when there is none) and a list of ``{"role", "content"}``
        messages with roles alternating between ``user`` and ``assistant``, whose content is a list
        of blocks (``text``, ``image``, ``tool_use``, ``tool_result``).
    """
    system_parts: list[str] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role == "system":
            text = text_of(msg)
            if text.strip():
                system_parts.append(text)
            continue
        if role == "assistant":
            blocks = _content_blocks(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": fn.get("name", ""),
                        "input": _tool_input(fn.get("arguments")),
                    }
                )
            api_role = "assistant"
        elif role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": msg.get("tool_call_id", ""),
                "content": text_of(msg),
            }
            if msg.get("is_error") is True:
                block["is_error"] = True
            blocks = [block]
            api_role = "user"
        else:  # user, and anything unknown is treated as the user speaking
            blocks = _content_blocks(msg.get("content"))
            api_role = "user"
        if not blocks:
            continue
        if out and out[-1]["role"] == api_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": api_role, "content": blocks})
    for merged in out:
        # tool_result blocks must open a user message, before any text that follows them.
        if merged["role"] == "user":
            merged["content"].sort(key=lambda b: b["type"] != "tool_result")
    system = "\n\n".join(system_parts) if system_parts else None
    return system, out


def tools_to_anthropic(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Translate OpenAI function-tool schemas into Anthropic tool definitions.

    Args:
        tools: ``{"type": "function", "function": {name, description, parameters}}`` schemas
            (a bare ``{name, description, parameters}`` is accepted too).

    Returns:
        Anthropic tool definitions.
    """
    out = []
    for tool in tools:
        fn = tool.get("function", tool)
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        entry: dict[str, Any] = {"name": fn["name"], "input_schema": schema}
        if fn.get("description"):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


def from_anthropic(content: Sequence[Any]) -> Message:
    """Translate Anthropic response content blocks into an OpenAI-shaped assistant message.

    Args:
        content: Content blocks, as SDK objects or dicts. ``text`` blocks are joined; each
            ``tool_use`` block becomes a tool call whose ``arguments`` is its ``input`` as JSON (an
            ``input`` already given as a string is kept verbatim). Other blocks are ignored.

    Returns:
        ``{"role": "assistant", "content": ..., "tool_calls": [...]}`` (``tool_calls`` only when
        present; ``content`` is ``None`` for a tool-call-only answer).
    """
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = _field(block, "type")
        if kind == "text":
            texts.append(_field(block, "text", "") or "")
        elif kind == "tool_use":
            raw = _field(block, "input", {})
            arguments = raw if isinstance(raw, str) else json.dumps(raw)
            calls.append(
                {
                    "id": _field(block, "id", ""),
                    "type": "function",
                    "function": {"name": _field(block, "name", ""), "arguments": arguments},
                }
            )
    text = "".join(texts)
    message: Message = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls  # type: ignore[typeddict-item]
    return message


class AnthropicProvider(SDKProvider):
    """Claude models over Anthropic's Messages API, streamed.

    Args:
        model: Model name (``claude-...``); ``None`` picks :data:`DEFAULT_MODEL`.
        name: Provider name shown in errors.
        api_key: API key; default ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``).
        base_url: Another endpoint (proxy, gateway); default the SDK's (``ANTHROPIC_BASE_URL``).
        max_tokens: Cap on generated tokens (the API requires one).
        max_retries: Retries of rate-limited, overloaded or failed requests, with backoff.
        timeout: Seconds to wait for one attempt.
        temperature: Sampling temperature; ``None`` leaves the API default.
        context_window: Override of the model's context window (default from the table of
            known models: 200,000 tokens for Claude models).

    Raises:
        MissingCredentialsError: No key given and ``ANTHROPIC_API_KEY`` is not set.
    """

    sdk_module = "anthropic"
    sdk_extra = "anthropic"
    sdk_purpose = "Claude models"
    sdk_error = "AnthropicError"
    key_env = ("ANTHROPIC_API_KEY",)

    def __init__(
        self,
        model: str | None = None,
        *,
        name: str = "anthropic",
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 4096,
        max_retries: int = 3,
        timeout: float = 120.0,
        temperature: float | None = None,
        context_window: int | None = None,
    ) -> None:
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            raise MissingCredentialsError(name, "ANTHROPIC_API_KEY")
        super().__init__(
            name=name,
            model=model or DEFAULT_MODEL,
            api_key=key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
            context_window=context_window,
        )
        self._remember(locals())
        self.max_tokens = max_tokens
        self.temperature = temperature

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r})"

    def _new_client(self) -> Any:
        return self.sdk.AsyncAnthropic(**self._client_options())

    def _default_url(self) -> str:
        return "api.anthropic.com"

    def _known_context_window(self) -> int | None:
        return known_context_window("anthropic", self.model)

    def _request(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        system, api_messages = to_anthropic(messages)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": api_messages,
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = tools_to_anthropic(tools)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs

    async def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Send one Messages API request and stream the answer.

        Args:
            messages: The conversation in the OpenAI shape.
            tools: OpenAI function-tool schemas (may be empty).

        Yields:
            ``TextDelta`` for each piece of text, then one ``ModelResponse`` in the OpenAI shape.

        Raises:
            ProviderError: The API refused or failed after the SDK's retries.
        """
        kwargs = self._request(messages, tools)
        blocks: dict[int, dict[str, Any]] = {}
        json_parts: dict[int, list[str]] = {}
        usage = Usage()
        stop_reason: str | None = None
        with self._sdk_errors():
            stream = await self.client.messages.create(**kwargs)
            try:
                async for event in stream:
                    kind = _field(event, "type")
                    if kind == "message_start":
                        u = _field(_field(event, "message"), "usage")
                        if u is not None:
                            usage.input_tokens = sum(
                                _field(u, k, 0) or 0
                                for k in (
                                    "input_tokens",
                                    "cache_creation_input_tokens",
                                    "cache_read_input_tokens",
                                )
                            )
                            usage.output_tokens = _field(u, "output_tokens", 0) or 0
                            usage.cache_read_tokens = _field(u, "cache_read_input_tokens", 0) or 0
                            usage.cache_write_tokens = (
                                _field(u, "cache_creation_input_tokens", 0) or 0
                            )
                    elif kind == "content_block_start":
                        index = _field(event, "index", len(blocks))
                        block = _field(event, "content_block")
                        btype = _field(block, "type")
                        if btype == "text":
                            blocks[index] = {"type": "text", "text": _field(block, "text", "")}
                            if blocks[index]["text"]:
                                yield TextDelta(blocks[index]["text"])
                        elif btype == "tool_use":
                            blocks[index] = {
                                "type": "tool_use",
                                "id": _field(block, "id", ""),
                                "name": _field(block, "name", ""),
                            }
                            json_parts[index] = []
                    elif kind == "content_block_delta":
                        index = _field(event, "index", 0)
                        delta = _field(event, "delta")
                        dtype = _field(delta, "type")
                        if dtype == "text_delta" and index in blocks:
                            piece = _field(delta, "text", "")
                            blocks[index]["text"] += piece
                            if piece:
                                yield TextDelta(piece)
                        elif dtype == "input_json_delta" and index in json_parts:
                            json_parts[index].append(_field(delta, "partial_json", ""))
                    elif kind == "message_delta":
                        stop_reason = _field(_field(event, "delta"), "stop_reason") or stop_reason
                        u = _field(event, "usage")
                        if u is not None and _field(u, "output_tokens") is not None:
                            usage.output_tokens = _field(u, "output_tokens")
                    elif kind == "error":
                        error = _field(event, "error")
                        raise ProviderError(
                            f"{self.name} reported an error: {_field(error, 'message', error)}",
                            provider=self.name,
                            retryable=_field(error, "type") == "overloaded_error",
                        )
            finally:
                await stream.close()
        for index, parts in json_parts.items():
            raw = "".join(parts)
            try:
                blocks[index]["input"] = json.loads(raw) if raw.strip() else {}
            except ValueError:
                blocks[index]["input"] = raw  # kept verbatim; the tool layer reports bad JSON
        message = from_anthropic([blocks[i] for i in sorted(blocks)])
        yield ModelResponse(
            message=message,
            usage=usage,
            finish_reason=_STOP_REASONS.get(stop_reason or "", stop_reason),
            raw=blocks,
        )

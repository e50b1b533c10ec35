"""Providers that speak the OpenAI chat-completions API, through the official ``openai`` SDK.

One class, :class:`OpenAICompatProvider`, serves OpenAI itself and every server that copies its
wire format. A *preset* picks the base URL and the API-key environment variable:

============  =================================================  ============================
preset        base URL                                           API key
============  =================================================  ============================
``openai``    ``OPENAI_BASE_URL`` or the SDK default             ``OPENAI_API_KEY``
``groq``      ``https://api.groq.com/openai/v1``                 ``GROQ_API_KEY``
``ollama``    ``OLLAMA_HOST`` or ``http://127.0.0.1:11434/v1``   none needed
``gemini``    ``https://generativelanguage.googleapis.com/...``  ``GEMINI_API_KEY`` or
                                                                 ``GOOGLE_API_KEY``
``openai-compatible``  the ``base_url`` you give                 only ``api_key=``
============  =================================================  ============================

The SDK retries 408/409/429/5xx answers, timeouts and connection errors with exponential backoff
(``max_retries``, default 3). What is left becomes a :class:`~scratchy.errors.ProviderError`
carrying the HTTP status, the server's own message and whether retrying later may help.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import (
    MissingCredentialsError,
    MissingDependencyError,
    ModelBehaviorError,
    ProviderError,
    UsageError,
)
from ..messages import Message
from .base import ModelResponse, TextDelta, ToolSchema, Usage

__all__ = ["PRESETS", "OpenAICompatProvider", "Preset", "clean_messages", "to_provider_error"]

_NO_KEY = "not-needed"
"""Placeholder key for local servers: the SDK insists on a non-empty key."""

_OPENAI_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
"""The message keys the chat-completions API knows; anything else stays in the session only."""

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class Preset:
    """Where a named OpenAI-compatible service lives and how it authenticates."""

    base_url: str | None
    """Default base URL (``None``: the SDK's own default, ``https://api.openai.com/v1``)."""
    key_env: tuple[str, ...] = ()
    """Environment variables holding the API key, in order of preference."""
    key_required: bool = True
    """Whether a missing key is an error (local servers need none)."""
    default_model: str | None = None
    """The model used when none is given."""
    base_url_env: str | None = None
    """An environment variable that overrides ``base_url``."""
    extra_hint: str = field(default="")
    """Appended to connection errors (how to start the server, for local ones)."""


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        None, ("OPENAI_API_KEY",), default_model="gpt-4o-mini", base_url_env="OPENAI_BASE_URL"
    ),
    "groq": Preset(
        "https://api.groq.com/openai/v1", ("GROQ_API_KEY",), default_model="llama-3.1-8b-instant"
    ),
    "ollama": Preset(
        "http://127.0.0.1:11434/v1",
        (),
        key_required=False,
        default_model="llama3.2",
        base_url_env="OLLAMA_HOST",
        extra_hint="is Ollama running? start it with 'ollama serve'",
    ),
    "gemini": Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        default_model="gemini-2.0-flash",
    ),
    # No key variable on purpose: OPENAI_API_KEY must not leak to an arbitrary server.
    "openai-compatible": Preset(
        None,
        (),
        key_required=False,
        default_model="default",
        base_url_env="OPENAI_BASE_URL",
    ),
}
"""The named services; ``openai-compatible`` is any server given by ``base_url``."""


def _ollama_base_url(host: str) -> str:
    """Turn an ``OLLAMA_HOST`` value (``0.0.0.0``, ``host:port``, a URL) into a ``/v1`` URL."""
    host = host.strip()
    if "://" not in host:
        host = "http://" + host
    parts = urlsplit(host)
    hostname = parts.hostname or "127.0.0.1"
    if hostname in ("0.0.0.0", "::"):  # a bind address, not somewhere to connect to
        hostname = "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    port = parts.port or 11434
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{hostname}:{port}{path}"


def clean_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy messages keeping only the keys the chat-completions API accepts.

    Sessions may carry extra keys (timestamps, ids, usage); strict servers reject unknown fields,
    so only ``role``, ``content``, ``tool_calls``, ``tool_call_id`` and ``name`` are sent, and each
    tool call is reduced to ``{id, type, function: {name, arguments}}``.

    Args:
        messages: OpenAI-shaped messages, possibly with extra keys.

    Returns:
        New dicts, safe to send; the input is not modified.
    """
    out: list[dict[str, Any]] = []
    for msg in messages:
        clean = {key: msg[key] for key in _OPENAI_KEYS if key in msg}
        if clean.get("role") != "assistant" or not clean.get("tool_calls"):
            clean.pop("tool_calls", None)
        else:
            calls = []
            for call in clean["tool_calls"]:
                fn = call.get("function") or {}
                args = fn.get("arguments", "")
                if not isinstance(args, str):
                    args = json.dumps(args)
                calls.append(
                    {
                        "id": call.get("id", ""),
                        "type": "function",
                        "function": {"name": fn.get("name", ""), "arguments": args},
                    }
                )
            clean["tool_calls"] = calls
        if clean.get("role") != "tool":
            clean.pop("tool_call_id", None)
        if "content" not in clean:
            clean["content"] = None
        out.append(clean)
    return out


def _server_message(exc: Any, limit: int = 500) -> str:
    """The server's own explanation from an SDK error (``error.message``, ``detail``...)."""
    text = _raw_server_message(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _raw_server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, Mapping):
                value = value.get("message")
            if isinstance(value, str) and value:
                return value
            if value:
                return json.dumps(value)
    elif isinstance(body, str) and body.strip():
        return body.strip()
    message = getattr(exc, "message", None) or str(exc)
    return str(message)


def _status_hint(status: int, key_env: Sequence[str]) -> str:
    if status in (401, 403):
        return "check the API key" + (f" ({key_env[0]})" if key_env else "")
    if status == 404:
        return "check the model name and the base URL"
    if status == 429:
        return "rate limited or out of quota; wait and try again"
    if status >= 500:
        return "the server failed; try again later"
    return ""


def to_provider_error(
    exc: BaseException, provider: str, *, base_url: str = "", key_env: Sequence[str] = ()
) -> ProviderError:
    """Map an ``openai`` SDK exception to a :class:`ProviderError`.

    Args:
        exc: The exception raised by the SDK.
        provider: Provider name for the message.
        base_url: The server's URL, named in connection errors.
        key_env: Environment variables holding the key, named in 401/403 hints.

    Returns:
        A ``ProviderError`` with ``status`` (HTTP status or ``None``), the server's message and
        ``retryable`` set for rate limits, server errors, timeouts and connection failures.
    """
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        hint = _status_hint(status, key_env)
        text = f"{provider} answered HTTP {status}: {_server_message(exc)}"
        return ProviderError(
            text + (f" ({hint})" if hint else ""),
            provider=provider,
            status=status,
            retryable=status in _RETRYABLE_STATUS or status >= 500,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            f"{provider} did not answer in time ({base_url}); try again or raise timeout=",
            provider=provider,
            retryable=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        preset = PRESETS.get(provider)
        hint = f"; {preset.extra_hint}" if preset and preset.extra_hint else ""
        cause = exc.__cause__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return ProviderError(
            f"cannot reach {provider} at {base_url}{detail}{hint}",
            provider=provider,
            retryable=True,
        )
    if isinstance(exc, openai.APIError):  # e.g. an error event in the middle of a stream
        return ProviderError(
            f"{provider} reported an error: {_server_message(exc)}", provider=provider
        )
    return ProviderError(f"{provider} failed: {exc}", provider=provider)


class _ToolCallAccumulator:
    """Builds complete tool calls from streamed deltas, keyed by their ``index``.

    Some servers omit ``index`` or reuse index 0 for parallel calls; a delta whose ``id`` differs
    from the call already at that index therefore starts a new call.
    """

    def __init__(self) -> None:
        self._calls: list[dict[str, Any]] = []
        self._by_index: dict[Any, dict[str, Any]] = {}

    def add(self, delta: Any) -> None:
        index = getattr(delta, "index", None)
        call_id = getattr(delta, "id", None)
        fn = getattr(delta, "function", None)
        name = getattr(fn, "name", None) if fn is not None else None
        args = getattr(fn, "arguments", None) if fn is not None else None
        if index is None:
            current = self._calls[-1] if self._calls else None
        else:
            current = self._by_index.get(index)
        if current is None or (call_id and current["id"] and call_id != current["id"]):
            current = {"id": call_id or "", "name": "", "args": []}
            self._calls.append(current)
            if index is not None:
                self._by_index[index] = current
        elif call_id and not current["id"]:
            current["id"] = call_id
        # Most servers send the name once; a few repeat it in every delta.
        if name and name != current["name"]:
            current["name"] += name
        if args:
            current["args"].append(args if isinstance(args, str) else json.dumps(args))

    def result(self) -> list[dict[str, Any]]:
        calls = []
        for call in self._calls:
            if not call["name"] and not call["args"]:
                continue
            calls.append(
                {
                    "id": call["id"] or f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    # Kept verbatim even when it is not valid JSON: the tool layer reports that
                    # to the model, which can then correct itself.
                    "function": {"name": call["name"], "arguments": "".join(call["args"])},
                }
            )
        return calls


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("openai", "openai", "OpenAI-compatible providers") from exc
    return openai


class OpenAICompatProvider:
    """A model served over the OpenAI chat-completions API (OpenAI, Groq, Ollama, Gemini...).

    Example:
        >>> p = OpenAICompatProvider("llama3.2", name="ollama")        # doctest: +SKIP
        >>> p = OpenAICompatProvider("qwen", base_url="http://127.0.0.1:8080/v1")  # doctest: +SKIP

    Args:
        model: Model name sent to the server; ``None`` picks the preset's default.
        name: Preset name (see :data:`PRESETS`), also shown in errors. Default ``openai``, or
            ``openai-compatible`` when ``base_url`` is given.
        api_key: API key; default from the preset's environment variable. Local servers need none.
        base_url: Server URL ending in ``/v1`` (overrides the preset).
        max_retries: Retries of rate-limited, failed (5xx) or timed-out requests, with backoff.
        timeout: Seconds to wait for the server before giving up on one attempt.
        temperature: Sampling temperature; ``None`` leaves the server default.
        max_tokens: Cap on generated tokens; ``None`` leaves the server default.
        extra_body: Extra JSON fields merged into every request (server-specific options).

    Raises:
        MissingCredentialsError: The preset needs a key and none was given or found.
        UsageError: Unknown preset without ``base_url``.
    """

    supports_tools = True
    can_stream = True

    def __init__(
        self,
        model: str | None = None,
        *,
        name: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 3,
        timeout: float = 120.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if name is None:
            name = "openai-compatible" if base_url else "openai"
        preset = PRESETS.get(name)
        if preset is None:
            if not base_url:
                raise UsageError(
                    f"unknown OpenAI-compatible preset {name!r}: use one of "
                    f"{', '.join(sorted(PRESETS))}, or pass base_url=..."
                )
            preset = PRESETS["openai-compatible"]
        self.name = name
        self.model = model or preset.default_model or "default"
        self.max_retries = max_retries
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self._key_env = preset.key_env

        env_base = os.environ.get(preset.base_url_env) if preset.base_url_env else None
        if base_url:
            self.base_url: str | None = base_url
        elif env_base:
            self.base_url = _ollama_base_url(env_base) if name == "ollama" else env_base
        else:
            self.base_url = preset.base_url
        custom_server = bool(base_url or env_base) and name in ("openai", "openai-compatible")

        key = api_key or next((os.environ[v] for v in preset.key_env if os.environ.get(v)), None)
        if not key:
            if preset.key_required and not custom_server:
                raise MissingCredentialsError(name, preset.key_env[0])
            key = _NO_KEY
        self._api_key = key
        self._stream_options_ok: bool | None = None  # None: not known yet
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        _import_openai()

    def __repr__(self) -> str:
        return (
            f"OpenAICompatProvider(name={self.name!r}, model={self.model!r}, "
            f"base_url={self.base_url!r})"
        )

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client, created for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # httpx connection pools belong to one event loop; a REPL that calls asyncio.run()
            # per turn needs a fresh client each time.
            openai = _import_openai()
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=self.max_retries,
                timeout=self.timeout,
            )
            self._client_loop = loop
        return self._client

    def _request(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": clean_messages(messages),
            "stream": True,
        }
        if tools:
            kwargs["tools"] = list(tools)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        if self._stream_options_ok is not False:
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    async def _open_stream(self, kwargs: dict[str, Any]) -> Any:
        openai = _import_openai()
        client = self.client
        try:
            stream = await client.chat.completions.create(**kwargs)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            # Some servers reject the stream_options field. Until one request with it has
            # succeeded, a 400/422 is retried once without it; if that works, it stays off.
            if "stream_options" not in kwargs or self._stream_options_ok:
                raise
            retry = {k: v for k, v in kwargs.items() if k != "stream_options"}
            stream = await client.chat.completions.create(**retry)
            self._stream_options_ok = False
            return stream
        if "stream_options" in kwargs:
            self._stream_options_ok = True
        return stream

    async def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Send one chat-completions request and stream the answer.

        Args:
            messages: The conversation in the OpenAI shape (extra keys are dropped).
            tools: OpenAI function-tool schemas (may be empty).

        Yields:
            ``TextDelta`` for each piece of text, then one ``ModelResponse`` whose message holds
            the full text and the assembled ``tool_calls``.

        Raises:
            ProviderError: The server refused or failed after the SDK's retries.
        """
        openai = _import_openai()
        kwargs = self._request(messages, tools)
        text: list[str] = []
        calls = _ToolCallAccumulator()
        usage: Usage | None = None
        finish_reason: str | None = None
        last_chunk: Any = None
        try:
            stream = await self._open_stream(kwargs)
            try:
                async for chunk in stream:
                    last_chunk = chunk
                    chunk_usage = getattr(chunk, "usage", None)
                    if chunk_usage is not None:
                        usage = Usage(
                            input_tokens=getattr(chunk_usage, "prompt_tokens", 0) or 0,
                            output_tokens=getattr(chunk_usage, "completion_tokens", 0) or 0,
                        )
                    for choice in getattr(chunk, "choices", None) or []:
                        if getattr(choice, "index", 0) not in (0, None):
                            continue
                        finish_reason = getattr(choice, "finish_reason", None) or finish_reason
                        delta = getattr(choice, "delta", None)
                        if delta is None:
                            continue
                        piece = getattr(delta, "content", None) or getattr(delta, "refusal", None)
                        if piece:
                            text.append(piece)
                            yield TextDelta(piece)
                        for tc in getattr(delta, "tool_calls", None) or []:
                            calls.add(tc)
            finally:
                await stream.close()
        except openai.OpenAIError as exc:
            raise to_provider_error(
                exc,
                self.name,
                base_url=str(self.base_url or "api.openai.com"),
                key_env=self._key_env,
            ) from exc
        if last_chunk is None:
            # llama-cpp-python's server, for one, answers 200 with an empty stream when it
            # cannot serve a request (such as a prompt longer than its context window).
            raise ModelBehaviorError(
                f"{self.name} ended the stream without sending anything; the server may have "
                f"refused the request (is the prompt longer than its context window?)",
                provider=self.name,
            )
        tool_calls = calls.result()
        content = "".join(text)
        message: Message = {"role": "assistant", "content": content or (None if tool_calls else "")}
        if tool_calls:
            message["tool_calls"] = tool_calls  # type: ignore[typeddict-item]
        yield ModelResponse(
            message=message, usage=usage, finish_reason=finish_reason, raw=last_chunk
        )

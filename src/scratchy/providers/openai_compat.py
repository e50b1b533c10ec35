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

``context_window`` comes from ``context_window=``, else from what the server reports in
``GET /models`` (vLLM, llama.cpp and others say; asked once, by :meth:`~OpenAICompatProvider.load`,
for servers other than OpenAI, Gemini and Groq themselves), else from a table of known model
families.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import MissingCredentialsError, ModelBehaviorError, ProviderError, UsageError
from ..messages import Message
from ._client import SDKProvider
from ._client import to_provider_error as _to_provider_error
from ._windows import known_context_window, reported_context_window
from .base import ModelResponse, TextDelta, ToolSchema, Usage

__all__ = ["PRESETS", "OpenAICompatProvider", "Preset", "clean_messages", "to_provider_error"]

_NO_KEY = "not-needed"
"""Placeholder key for local servers: the SDK insists on a non-empty key."""

_OPENAI_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
"""The message keys the chat-completions API knows; anything else stays in the session only."""


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


def to_provider_error(
    exc: BaseException, provider: str, *, base_url: str = "", key_env: Sequence[str] = ()
) -> ProviderError:
    """Map an ``openai`` SDK exception to a :class:`ProviderError` (see
    :func:`scratchy.providers._client.to_provider_error`, which serves every SDK)."""
    import openai

    preset = PRESETS.get(provider)
    return _to_provider_error(
        exc,
        openai,
        provider,
        base_url=base_url,
        key_env=key_env,
        connect_hint=preset.extra_hint if preset else "",
    )


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


class OpenAICompatProvider(SDKProvider):
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
        context_window: The model's context window in tokens, when the server and the table of
            known models do not know it (or know it wrong).
        streaming: ``False`` asks for whole answers (for servers that cannot stream); the
            stream then yields one ``ModelResponse`` and ``can_stream`` is ``False``.

    Raises:
        MissingCredentialsError: The preset needs a key and none was given or found.
        UsageError: Unknown preset without ``base_url``.
    """

    sdk_module = "openai"
    sdk_extra = "openai"
    sdk_purpose = "OpenAI-compatible providers"
    sdk_error = "OpenAIError"

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
        context_window: int | None = None,
        streaming: bool = True,
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
        env_base = os.environ.get(preset.base_url_env) if preset.base_url_env else None
        if base_url:
            url: str | None = base_url
        elif env_base:
            url = _ollama_base_url(env_base) if name == "ollama" else env_base
        else:
            url = preset.base_url
        custom_server = bool(base_url or env_base) and name in ("openai", "openai-compatible")

        key = api_key or next((os.environ[v] for v in preset.key_env if os.environ.get(v)), None)
        if not key:
            if preset.key_required and not custom_server:
                raise MissingCredentialsError(name, preset.key_env[0])
            key = _NO_KEY
        super().__init__(
            name=name,
            model=model or preset.default_model or "default",
            api_key=key,
            base_url=url,
            max_retries=max_retries,
            timeout=timeout,
            context_window=context_window,
        )
        self._remember(locals())
        self.key_env = preset.key_env
        self.connect_hint = preset.extra_hint
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.can_stream = streaming
        self._stream_options_ok: bool | None = None  # None: not known yet
        # Servers of unknown make are asked for their context window; the vendors' own
        # endpoints are covered by the table of known models.
        vendor = name in ("groq", "gemini") or (name == "openai" and not custom_server)
        self._ask_server = not vendor
        self._asked = False

    def __repr__(self) -> str:
        return (
            f"OpenAICompatProvider(name={self.name!r}, model={self.model!r}, "
            f"base_url={self.base_url!r})"
        )

    def _new_client(self) -> Any:
        return self.sdk.AsyncOpenAI(**self._client_options())

    def _default_url(self) -> str:
        return "api.openai.com"

    def _known_context_window(self) -> int | None:
        if self.name == "ollama":  # its window is the server's num_ctx, whatever the model
            return None
        return known_context_window(
            "openai-compatible" if self._ask_server else self.name, self.model
        )

    async def load(self) -> None:
        """Ask a self-hosted server what context window it serves the model with.

        One ``GET {base_url}/models``, the first time only (vLLM reports ``max_model_len``,
        llama.cpp's llama-server ``meta.n_ctx_train``...); nothing for OpenAI, Gemini and Groq
        themselves. A server that answers without saying (llama-cpp-python's, Ollama) leaves
        :attr:`context_window` to the table of known models (or ``None``) until a refusal of a
        too-long prompt states it; one that cannot be reached is asked again by the next
        ``load()``. Nothing is raised here: the next request reports what is wrong.
        """
        if not self._ask_server or self._asked:
            return
        client = self.client.with_options(max_retries=0, timeout=min(self.timeout, 10.0))
        try:
            listing = await client.get("/models", cast_to=object)
        except self.sdk.APIStatusError:
            self._asked = True  # it answered: it has no listing
            return
        except self.sdk.OpenAIError:
            return  # not reachable (yet)
        self._asked = True
        stated = reported_context_window(listing, self.model)
        if stated is not None:
            self._reported_window = stated

    def _request(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": clean_messages(messages),
            "stream": self.can_stream,
        }
        if tools:
            kwargs["tools"] = list(tools)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        if self.can_stream and self._stream_options_ok is not False:
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    async def _open_stream(self, kwargs: dict[str, Any]) -> Any:
        openai = self.sdk
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
            the full text and the assembled ``tool_calls`` (with ``streaming=False``: only the
            ``ModelResponse``).

        Raises:
            ProviderError: The server refused or failed after the SDK's retries.
        """
        kwargs = self._request(messages, tools)
        if not self.can_stream:
            with self._sdk_errors():
                answer = await self.client.chat.completions.create(**kwargs)
            yield _whole_answer(answer)
            return
        text: list[str] = []
        calls = _ToolCallAccumulator()
        usage: Usage | None = None
        finish_reason: str | None = None
        last_chunk: Any = None
        with self._sdk_errors():
            stream = await self._open_stream(kwargs)
            try:
                async for chunk in stream:
                    last_chunk = chunk
                    chunk_usage = getattr(chunk, "usage", None)
                    if chunk_usage is not None:
                        usage = _usage(chunk_usage)
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
        if last_chunk is None:
            # llama-cpp-python's server, for one, answers 200 with an empty stream when it
            # cannot serve a request (such as a prompt longer than its context window).
            raise ModelBehaviorError(
                f"{self.name} ended the stream without sending anything; the server may have "
                f"refused the request (is the prompt longer than its context window?)",
                provider=self.name,
            )
        yield ModelResponse(
            message=_assistant("".join(text), calls.result()),
            usage=usage,
            finish_reason=finish_reason,
            raw=last_chunk,
        )


def _usage(raw: Any) -> Usage:
    details = getattr(raw, "prompt_tokens_details", None)  # OpenAI's automatic prompt cache
    return Usage(
        input_tokens=getattr(raw, "prompt_tokens", 0) or 0,
        output_tokens=getattr(raw, "completion_tokens", 0) or 0,
        cache_read_tokens=getattr(details, "cached_tokens", 0) or 0,
    )


def _assistant(content: str, tool_calls: list[dict[str, Any]]) -> Message:
    message: Message = {"role": "assistant", "content": content or (None if tool_calls else "")}
    if tool_calls:
        message["tool_calls"] = tool_calls  # type: ignore[typeddict-item]
    return message


def _whole_answer(answer: Any) -> ModelResponse:
    """The ``ModelResponse`` of a non-streamed chat completion."""
    choices = getattr(answer, "choices", None) or []
    if not choices:
        raise ModelBehaviorError("the server answered without a choice; try again")
    choice = choices[0]
    msg = choice.message
    calls = [
        {
            "id": getattr(tc, "id", None) or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": tc.function.name, "arguments": tc.function.arguments or ""},
        }
        for tc in (getattr(msg, "tool_calls", None) or [])
        if getattr(tc, "function", None) is not None
    ]
    content = getattr(msg, "content", None) or getattr(msg, "refusal", None) or ""
    usage = _usage(answer.usage) if getattr(answer, "usage", None) is not None else None
    return ModelResponse(
        message=_assistant(content, calls),
        usage=usage,
        finish_reason=getattr(choice, "finish_reason", None),
        raw=answer,
    )

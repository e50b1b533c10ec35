"""OpenAICompatProvider against real HTTP servers: llama.cpp's and a scripted one."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from scratchy.errors import ModelBehaviorError, ProviderError
from scratchy.providers import resolve_provider
from scratchy.providers.base import ModelResponse, TextDelta, complete
from scratchy.providers.openai_compat import OpenAICompatProvider

FAST_RETRY = {"retry-after-ms": "10"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]

pytestmark = pytest.mark.real_model  # the real openai client against real local servers


async def collect(provider: Any, messages: list[dict[str, Any]], tools=None):
    deltas: list[str] = []
    final: ModelResponse | None = None
    async for event in provider.stream(messages, tools or []):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            assert final is None, "exactly one ModelResponse"
            final = event
    assert final is not None
    return deltas, final


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any):
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": choices, **extra}  # fmt: skip


# --- real llama.cpp server -------------------------------------------------------------------


async def test_llama_server_streams_answer_with_usage(llama_server: str) -> None:
    provider = OpenAICompatProvider("smollm2", base_url=llama_server, max_tokens=40)
    messages = [{"role": "user", "content": "Say hello in one short sentence.", "ts": 1}]
    deltas, final = await collect(provider, messages)
    assert len(deltas) >= 2
    assert final.message["role"] == "assistant"
    assert final.message["content"] == "".join(deltas)
    assert final.message["content"].strip()
    assert "tool_calls" not in final.message
    assert final.finish_reason in ("stop", "length")
    # llama-cpp-python's server ignores stream_options and sends no usage while streaming;
    # the provider then reports none rather than guessing (usage parsing is tested below).
    assert final.usage is None or final.usage.output_tokens > 0


async def test_llama_server_via_resolve_provider(llama_server: str) -> None:
    provider = resolve_provider("smollm2", base_url=llama_server, max_tokens=16)
    assert provider.name == "openai-compatible"
    reply = await complete(provider, [{"role": "user", "content": "Hi!"}])
    assert reply.message["content"]


async def test_llama_server_http_error_becomes_provider_error(llama_server: str) -> None:
    provider = OpenAICompatProvider("m", base_url=llama_server + "/no-such-route", max_retries=0)
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "Hi"}])
    assert info.value.status == 404
    assert info.value.retryable is False
    assert "404" in str(info.value)


async def test_llama_server_rejected_request(llama_server: str) -> None:
    provider = OpenAICompatProvider("m", base_url=llama_server, max_retries=0)
    with pytest.raises(ProviderError) as info:  # "robot" is no chat role; this server says 500
        await complete(provider, [{"role": "robot", "content": "Hi"}])
    assert info.value.status == 500
    assert "validation error" in str(info.value)  # the server's own message
    assert len(str(info.value)) < 700  # long server tracebacks are cut


async def test_llama_server_empty_stream_is_an_error(llama_server: str) -> None:
    # Too long for n_ctx=2048: this server answers 200 with an empty stream.
    provider = OpenAICompatProvider("m", base_url=llama_server, max_retries=0)
    with pytest.raises(ModelBehaviorError, match="context window"):
        await complete(provider, [{"role": "user", "content": "hello " * 3000}])


# --- scripted server ---------------------------------------------------------------------------


def tool_call_stream() -> list[Any]:
    """Two tool calls whose names and arguments arrive in pieces, then a usage-only chunk."""

    def tc(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    return [
        chunk({"role": "assistant", "content": "Let me check. "}),
        chunk(tc(0, id="call_a", type="function", function={"name": "get_weather",
                                                            "arguments": ""})),
        chunk(tc(0, function={"arguments": '{"ci'})),
        chunk(tc(0, function={"arguments": 'ty": "Par'})),
        chunk(tc(1, id="call_b", type="function", function={"name": "get_weather",
                                                            "arguments": '{"city"'})),
        chunk(tc(0, function={"arguments": 'is"}'})),
        chunk(tc(1, function={"arguments": ': "Oslo"}'})),
        chunk({}, finish="tool_calls"),
        chunk(None, usage={"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}),
        "[DONE]",
    ]  # fmt: skip


async def test_tool_call_deltas_are_assembled(scripted_server) -> None:
    scripted_server.sse(tool_call_stream())
    provider = OpenAICompatProvider("m", base_url=scripted_server.url + "/v1", max_retries=0)
    messages = [
        {"role": "system", "content": "Be brief.", "created_at": "2026-01-01"},
        {"role": "user", "content": "Weather in Paris and Oslo?", "id": 7},
    ]
    deltas, final = await collect(provider, messages, TOOLS)

    assert deltas == ["Let me check. "]
    assert final.finish_reason == "tool_calls"
    assert final.message["content"] == "Let me check. "
    assert final.message["tool_calls"] == [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
    ]  # fmt: skip
    assert json.loads(final.message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert (final.usage.input_tokens, final.usage.output_tokens) == (21, 9)

    [request] = scripted_server.requests
    assert request.path == "/v1/chat/completions"
    body = request.json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == TOOLS
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Oslo?"},
    ]
    assert request.headers["authorization"] == "Bearer not-needed"


async def test_malformed_tool_arguments_are_kept_verbatim(scripted_server) -> None:
    scripted_server.sse([
        chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "get_weather",
                                                                    "arguments": "{city: Par"}}]}),
        chunk({}, finish="tool_calls"),
        "[DONE]",
    ])  # fmt: skip
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0)
    _, final = await collect(provider, [{"role": "user", "content": "?"}], TOOLS)
    assert final.message["content"] is None
    assert final.message["tool_calls"][0]["function"]["arguments"] == "{city: Par"
    assert final.usage is None  # the server sent none; that is not an error


async def test_missing_ids_and_reused_index_give_separate_calls(scripted_server) -> None:
    # Some servers send parallel calls all at index 0 (or with no id at all).
    scripted_server.sse([
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f",
                                                                    "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g",
                                                                    "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 2, "function": {"name": "h", "arguments": "{}"}}]}),
        "[DONE]",
    ])  # fmt: skip
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0)
    _, final = await collect(provider, [{"role": "user", "content": "?"}])
    calls = final.message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["f", "g", "h"]
    assert calls[0]["id"] == "a" and calls[1]["id"] == "b" and calls[2]["id"].startswith("call_")


async def test_server_error_is_retried(scripted_server) -> None:
    scripted_server.json(500, {"error": {"message": "boom"}}, headers=FAST_RETRY)
    scripted_server.sse([chunk({"content": "ok"}), chunk({}, finish="stop"), "[DONE]"])
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=2)
    deltas, final = await collect(provider, [{"role": "user", "content": "hi"}])
    assert deltas == ["ok"] and final.message["content"] == "ok"
    assert len(scripted_server.requests) == 2


async def test_unauthorized_is_not_retried_and_keeps_server_message(scripted_server) -> None:
    scripted_server.json(
        401,
        {"error": {"message": "Invalid API key provided: sk-...abc", "type": "invalid_request"}},
    )
    provider = OpenAICompatProvider(
        "m", name="groq", api_key="sk-abc", base_url=scripted_server.url, max_retries=3
    )
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "hi"}])
    error = info.value
    assert error.status == 401 and error.retryable is False and error.provider == "groq"
    assert "Invalid API key provided" in str(error)
    assert "GROQ_API_KEY" in str(error)  # says what to check
    assert len(scripted_server.requests) == 1
    assert scripted_server.requests[0].headers["authorization"] == "Bearer sk-abc"


async def test_rate_limit_after_retries_is_retryable(scripted_server) -> None:
    for _ in range(2):
        scripted_server.json(429, {"error": {"message": "slow down"}}, headers=FAST_RETRY)
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=1)
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "hi"}])
    assert info.value.status == 429 and info.value.retryable is True
    assert "slow down" in str(info.value)
    assert len(scripted_server.requests) == 2


async def test_rejected_stream_options_are_dropped(scripted_server) -> None:
    scripted_server.json(400, {"error": {"message": "Unrecognized argument: stream_options"}})
    scripted_server.sse([chunk({"content": "fine"}), "[DONE]"])
    scripted_server.sse([chunk({"content": "again"}), "[DONE]"])
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0)
    assert (await complete(provider, [{"role": "user", "content": "1"}])).message[
        "content"
    ] == "fine"
    assert (await complete(provider, [{"role": "user", "content": "2"}])).message[
        "content"
    ] == "again"
    sent = [r.json for r in scripted_server.requests]
    assert "stream_options" in sent[0]
    assert "stream_options" not in sent[1] and "stream_options" not in sent[2]


async def test_error_event_in_stream_becomes_provider_error(scripted_server) -> None:
    scripted_server.sse(
        [chunk({"content": "par"}), {"error": {"message": "model crashed"}}],
        names=[None, "error"],
    )
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0)
    with pytest.raises(ProviderError, match="model crashed"):
        await collect(provider, [{"role": "user", "content": "hi"}])


async def test_connection_refused_is_retryable_without_status() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    provider = OpenAICompatProvider("m", name="ollama", base_url=f"http://127.0.0.1:{port}/v1",
                                    max_retries=0, timeout=5)  # fmt: skip
    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < 5
    assert info.value.status is None and info.value.retryable is True
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "ollama serve" in str(info.value)


# --- context window reported by the server -----------------------------------------------------


async def test_llama_server_context_window(llama_server: str) -> None:
    provider = OpenAICompatProvider("smollm2", base_url=llama_server, max_tokens=8,
                                    max_retries=0)  # fmt: skip
    assert provider.context_window is None  # not a model name the table knows
    await provider.load()
    # llama-cpp-python's server lists its models without their context size: still unknown,
    # rather than guessed.
    assert provider.context_window is None and provider._asked is True
    whole = OpenAICompatProvider("smollm2", base_url=llama_server, max_tokens=8,
                                 max_retries=0, streaming=False)  # fmt: skip
    with pytest.raises(ProviderError) as info:  # refused: longer than --n_ctx 2048
        await complete(whole, [{"role": "user", "content": "hello " * 3000}])
    assert info.value.status == 400 and "maximum context length is 2048" in str(info.value)
    assert whole.context_window == 2048  # the refusal stated it: the next turn can compact
    reply = await complete(whole, [{"role": "user", "content": "Hi"}])
    assert reply.message["content"]
    pinned = resolve_provider("smollm2", base_url=llama_server, context_window=1000)
    await pinned.load()
    assert pinned.context_window == 1000  # an explicit value wins
    for p in (provider, whole, pinned):
        await p.aclose()


@pytest.mark.parametrize(
    ("listing", "window"),
    [
        ({"object": "list", "data": [{"id": "m", "object": "model", "max_model_len": 32768}]},
         32768),  # vLLM
        ({"data": [{"id": "other", "max_model_len": 4096}, {"id": "m", "max_model_len": 8192}]},
         8192),  # several models: the one asked for
        ({"data": [{"id": "/models/x.gguf", "meta": {"n_ctx_train": 131072, "n_vocab": 5}}]},
         131072),  # llama.cpp's llama-server: one model answers to any name
        ({"data": [{"id": "m", "context_length": 65536}]}, 65536),  # OpenRouter, LM Studio
        ({"data": [{"id": "m", "object": "model"}]}, None),  # Ollama: says nothing
        ({"data": [{"id": "a", "max_model_len": 1}, {"id": "b", "max_model_len": 2}]}, None),
    ],
)  # fmt: skip
async def test_reported_context_window(scripted_server, listing, window) -> None:
    scripted_server.json(200, listing)
    scripted_server.sse([chunk({"content": "ok"}), "[DONE]"])
    provider = OpenAICompatProvider("m", base_url=scripted_server.url + "/v1", max_retries=0)
    await provider.load()
    await provider.load()  # asked once only
    assert provider.context_window == window
    await complete(provider, [{"role": "user", "content": "hi"}])
    assert [(r.method, r.path) for r in scripted_server.requests] == [
        ("GET", "/v1/models"), ("POST", "/v1/chat/completions")
    ]  # fmt: skip
    await provider.aclose()


async def test_unanswered_model_listing_is_not_an_error(scripted_server) -> None:
    scripted_server.json(404, {"error": {"message": "no such route"}})
    scripted_server.sse([chunk({"content": "fine"}), "[DONE]"])
    provider = OpenAICompatProvider("gpt-4o", base_url=scripted_server.url, max_retries=3)
    await provider.load()
    reply = await complete(provider, [{"role": "user", "content": "hi"}])
    assert reply.message["content"] == "fine"
    assert provider.context_window == 128_000  # a proxy serving a known model: the table's
    assert len(scripted_server.requests) == 2  # the listing was not retried


# --- without streaming -------------------------------------------------------------------------


async def test_llama_server_without_streaming(llama_server: str) -> None:
    provider = OpenAICompatProvider("smollm2", base_url=llama_server, max_tokens=24,
                                    streaming=False)  # fmt: skip
    assert provider.can_stream is False
    events = [e async for e in provider.stream([{"role": "user", "content": "Say hi."}], [])]
    assert len(events) == 1 and isinstance(events[0], ModelResponse)
    final = events[0]
    assert final.message["role"] == "assistant" and final.message["content"].strip()
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.finish_reason in ("stop", "length")
    await provider.aclose()


async def test_whole_answer_with_tool_calls(scripted_server) -> None:
    scripted_server.json(200, {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}],
        }}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    })  # fmt: skip
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0,
                                    streaming=False)  # fmt: skip
    [final] = [e async for e in provider.stream([{"role": "user", "content": "?"}], TOOLS)]
    assert final.message == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}  # fmt: skip
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 4)
    [request] = scripted_server.requests
    body = request.json
    assert body["stream"] is False and "stream_options" not in body
    await provider.aclose()


async def test_whole_answer_error_is_a_provider_error(scripted_server) -> None:
    scripted_server.json(503, {"error": {"message": "warming up"}})
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0,
                                    streaming=False)  # fmt: skip
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "?"}])
    assert info.value.status == 503 and info.value.retryable is True
    assert "warming up" in str(info.value) and "try again later" in str(info.value)


# --- event loops -------------------------------------------------------------------------------


def test_a_new_event_loop_per_turn_gets_its_own_client(scripted_server) -> None:
    import asyncio

    for word in ("one", "two", "three"):
        scripted_server.sse([chunk({"content": word}), "[DONE]"])
    provider = OpenAICompatProvider("m", base_url=scripted_server.url, max_retries=0)

    async def turn() -> tuple[str, object]:
        reply = await complete(provider, [{"role": "user", "content": "hi"}])
        return reply.message["content"], provider.client

    first, client_one = asyncio.run(turn())  # as a REPL that runs asyncio.run() per turn
    second, client_two = asyncio.run(turn())
    assert (first, second) == ("one", "two") and client_one is not client_two

    async def last_turn_then_close() -> object:
        _, client = await turn()
        await provider.aclose()
        return client

    client_three = asyncio.run(last_turn_then_close())
    assert client_three.is_closed()
    assert provider._clients == {}  # the ended loops' clients were dropped, this one closed


async def test_unreachable_server_at_load_is_not_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    provider = OpenAICompatProvider("m", base_url=f"http://127.0.0.1:{port}/v1", timeout=5)
    start = time.monotonic()
    await provider.load()  # the request that follows reports the problem, not load()
    assert time.monotonic() - start < 5
    assert provider.context_window is None and provider._asked is False  # asked again later
    await provider.aclose()

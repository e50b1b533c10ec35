"""Provider resolution, credentials errors and the message translations (no network)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from scratchy.errors import MissingCredentialsError, ProviderError, UsageError
from scratchy.providers import PROVIDERS, parse_model_id, resolve_provider
from scratchy.providers.anthropic import (
    AnthropicProvider,
    from_anthropic,
    to_anthropic,
    tools_to_anthropic,
)
from scratchy.providers.base import TextDelta, complete
from scratchy.providers.openai_compat import OpenAICompatProvider, clean_messages

KEY_VARS = [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ADMIN_KEY", "GROQ_API_KEY", "GEMINI_API_KEY",
    "GOOGLE_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
    "OLLAMA_HOST", "SCRATCHY_MODEL",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)


# --- resolve_provider --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "env", "name", "model", "base_url"),
    [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY", "openai", "gpt-4o-mini", None),
        ("gpt-4o", "OPENAI_API_KEY", "openai", "gpt-4o", None),
        ("groq:llama-3.1-8b-instant", "GROQ_API_KEY", "groq", "llama-3.1-8b-instant",
         "https://api.groq.com/openai/v1"),
        ("gemini:gemini-2.0-flash", "GEMINI_API_KEY", "gemini", "gemini-2.0-flash",
         "https://generativelanguage.googleapis.com/v1beta/openai/"),
        ("gemini:", "GOOGLE_API_KEY", "gemini", "gemini-2.0-flash",
         "https://generativelanguage.googleapis.com/v1beta/openai/"),
        ("ollama:llama3.2", None, "ollama", "llama3.2", "http://127.0.0.1:11434/v1"),
        ("ollama:llama3.2:3b", None, "ollama", "llama3.2:3b", "http://127.0.0.1:11434/v1"),
        ("OLLAMA:qwen2.5", None, "ollama", "qwen2.5", "http://127.0.0.1:11434/v1"),
    ],
)  # fmt: skip
def test_resolve_openai_compatible_forms(monkeypatch, spec, env, name, model, base_url) -> None:
    if env:
        monkeypatch.setenv(env, "k-123")
    provider = resolve_provider(spec)
    assert isinstance(provider, OpenAICompatProvider)
    assert (provider.name, provider.model, provider.base_url) == (name, model, base_url)


def test_resolve_anthropic(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    provider = resolve_provider("anthropic:claude-3-5-haiku-latest")
    assert isinstance(provider, AnthropicProvider)
    assert (provider.name, provider.model) == ("anthropic", "claude-3-5-haiku-latest")
    assert resolve_provider("claude-opus-4").name == "anthropic"  # bare, obvious name
    assert resolve_provider("anthropic:", max_tokens=100).max_tokens == 100


def test_original_scratchy_form() -> None:
    provider = resolve_provider(llm="ollama", model="llama3.2", api_key="unused")
    assert (provider.name, provider.model) == ("ollama", "llama3.2")
    assert resolve_provider(llm="Ollama", model="llama3.2:3b").model == "llama3.2:3b"
    assert resolve_provider(llm="groq", model="groq:llama-3.3", api_key="k").model == "llama-3.3"
    assert resolve_provider(llm="ollama").model == "llama3.2"  # the preset default


def test_explicit_key_and_base_url(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    provider = resolve_provider("openai:gpt-4o", api_key="sk-explicit", timeout=5, max_retries=0)
    assert provider._api_key == "sk-explicit"
    assert (provider.timeout, provider.max_retries) == (5, 0)
    bare = resolve_provider("qwen2.5:7b", base_url="http://127.0.0.1:8080/v1")
    assert (bare.name, bare.model, bare.base_url) == (
        "openai-compatible",
        "qwen2.5:7b",
        "http://127.0.0.1:8080/v1",
    )
    assert bare._api_key == "not-needed"  # no key needed, and OPENAI_API_KEY is not leaked
    nameless = resolve_provider(base_url="http://127.0.0.1:8080/v1")
    assert (nameless.name, nameless.model) == ("openai-compatible", "default")


def test_openai_base_url_env_is_respected(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    provider = resolve_provider("openai:my-model")  # a custom server: no key needed
    assert provider.base_url == "http://127.0.0.1:9999/v1"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:11434/v1"),
        ("10.0.0.5:11500", "http://10.0.0.5:11500/v1"),
        ("https://ollama.example.com", "https://ollama.example.com:11434/v1"),
        ("http://box:8080/v1/", "http://box:8080/v1"),
    ],
)
def test_ollama_host(monkeypatch, host, url) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert resolve_provider("ollama:llama3.2").base_url == url


def test_default_model_order(monkeypatch) -> None:
    pytest.importorskip("llama_cpp")
    assert resolve_provider().name == "local"
    monkeypatch.setenv("SCRATCHY_MODEL", "ollama:phi3")
    assert (resolve_provider().name, resolve_provider().model) == ("ollama", "phi3")
    assert resolve_provider("local:").name == "local"  # the argument wins over the variable


def test_local_forms(tmp_path) -> None:
    pytest.importorskip("llama_cpp")
    for spec in ("local", "local:", "local:smollm2"):
        provider = resolve_provider(spec)
        assert (provider.name, provider.model) == ("local", "smollm2")
        assert provider.path.name.endswith(".gguf")
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_provider(f"local:{gguf}").model == str(gguf)
    assert resolve_provider(str(gguf)).name == "local"
    assert resolve_provider("local", model_path=gguf, n_ctx=512).n_ctx == 512
    with pytest.raises(UsageError, match="no GGUF model file"):
        resolve_provider("local:/nowhere/model.gguf")


def test_unknown_provider_lists_valid_ones() -> None:
    with pytest.raises(UsageError) as info:
        resolve_provider("mistral:large")
    for name in PROVIDERS:
        assert name in str(info.value)
    with pytest.raises(UsageError, match="unknown provider 'cohere'"):
        resolve_provider(llm="cohere", model="x")
    with pytest.raises(UsageError, match="provider:model"):
        resolve_provider("some-model")


def test_unknown_option_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="does not take temprature"):
        resolve_provider("ollama:llama3.2", temprature=0.1)


@pytest.mark.parametrize(
    ("spec", "env_var"),
    [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("groq:llama-3.1-8b-instant", "GROQ_API_KEY"),
        ("gemini:gemini-2.0-flash", "GEMINI_API_KEY"),
        ("anthropic:claude-sonnet-4-6", "ANTHROPIC_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(spec, env_var) -> None:
    with pytest.raises(MissingCredentialsError) as info:
        resolve_provider(spec)
    assert info.value.env_var == env_var
    assert env_var in str(info.value)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ProviderError)


def test_parse_model_id() -> None:
    assert parse_model_id("ollama:llama3.2:3b") == ("ollama", "llama3.2:3b")
    assert parse_model_id("local:") == ("local", None)
    assert parse_model_id("local") == ("local", None)
    assert parse_model_id("claude:claude-3-opus") == ("anthropic", "claude-3-opus")
    assert parse_model_id("x:y", base_url="http://h/v1") == ("openai-compatible", "x:y")


def test_import_is_light() -> None:
    code = (
        "import sys, scratchy.providers\n"
        "heavy = [m for m in ('openai', 'anthropic', 'llama_cpp', 'httpx2') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- OpenAI message cleaning -----------------------------------------------------------------


def test_clean_messages_drops_extra_keys() -> None:
    messages = [
        {"role": "system", "content": "s", "timestamp": 1},
        {"role": "user", "content": "u", "name": "ann", "meta": {"x": 1}},
        {"role": "assistant", "content": None, "usage": {"in": 3},
         "tool_calls": [{"id": "c1", "type": "function", "index": 0,
                         "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "42", "is_error": False},
        {"role": "assistant", "content": "done", "tool_calls": []},
    ]  # fmt: skip
    original = copy.deepcopy(messages)
    assert clean_messages(messages) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u", "name": "ann"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1", "name": "f"},
        {"role": "assistant", "content": "done"},
    ]  # fmt: skip
    assert messages == original  # not modified


# --- Anthropic translation -----------------------------------------------------------------------

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "t1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "t2", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
    ]},
    {"role": "tool", "tool_call_id": "t1", "content": "18C"},
    {"role": "tool", "tool_call_id": "t2", "content": "Error: station down", "is_error": True},
    {"role": "user", "content": "Thanks. And tomorrow?"},
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": [{"type": "text", "text": "Be quick."}]},
]  # fmt: skip


def test_to_anthropic() -> None:
    system, messages = to_anthropic(CONVERSATION)
    assert system == "You are terse.\n\nAnswer in French."
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "t2", "name": "weather", "input": {"city": "Oslo"}},
        ]},
        # both tool results and the following user turns merged into one user message
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "t2", "content": "Error: station down",
             "is_error": True},
            {"type": "text", "text": "Thanks. And tomorrow?"},
            {"type": "text", "text": "Be quick."},
        ]},
    ]  # fmt: skip


def test_to_anthropic_odd_inputs() -> None:
    system, messages = to_anthropic([
        {"role": "user", "content": ""},  # empty text blocks are rejected by the API: dropped
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": "{bad json"}},
            {"id": "b", "function": {"name": "g", "arguments": ""}},
            {"id": "c", "function": {"name": "h", "arguments": "[1, 2]"}},
        ]},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ])  # fmt: skip
    assert system is None
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    inputs = [b["input"] for b in messages[1]["content"]]
    assert inputs == [{"_raw_arguments": "{bad json"}, {}, {"value": [1, 2]}]
    assert messages[2]["content"][0]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "AAAA",
    }


def test_from_anthropic_round_trip() -> None:
    assistant = CONVERSATION[2]
    _, messages = to_anthropic([{"role": "user", "content": "q"}, assistant])
    back = from_anthropic(messages[1]["content"])
    assert back["content"] == "Checking."
    assert back["tool_calls"] == [
        {**call, "function": {**call["function"],
                              "arguments": json.dumps(json.loads(call["function"]["arguments"]))}}
        for call in assistant["tool_calls"]
    ]  # fmt: skip


def test_from_anthropic_sdk_objects() -> None:
    blocks = [
        SimpleNamespace(type="thinking", thinking="hmm"),
        SimpleNamespace(type="tool_use", id="toolu_1", name="calc", input={"x": [1, 2]}),
    ]
    message = from_anthropic(blocks)
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "calc", "arguments": '{"x": [1, 2]}'}
    assert from_anthropic([{"type": "text", "text": "hi"}]) == {
        "role": "assistant",
        "content": "hi",
    }


def test_tools_to_anthropic() -> None:
    tools = [
        {"type": "function", "function": {"name": "f", "description": "Does f.",
                                          "parameters": {"type": "object",
                                                         "properties": {"a": {"type": "int"}}}}},
        {"type": "function", "function": {"name": "g"}},
    ]  # fmt: skip
    assert tools_to_anthropic(tools) == [
        {"name": "f", "description": "Does f.",
         "input_schema": {"type": "object", "properties": {"a": {"type": "int"}}}},
        {"name": "g", "input_schema": {"type": "object", "properties": {}}},
    ]  # fmt: skip


# --- Anthropic over a scripted HTTP server -----------------------------------------------------


def anthropic_events() -> tuple[list[str], list[dict[str, Any]]]:
    events = [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Let me "}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "look."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_9", "name": "weather", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 17}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return [e["type"] for e in events], events


async def test_anthropic_stream_over_http(scripted_server) -> None:
    names, events = anthropic_events()
    scripted_server.sse(events, names=names)
    provider = AnthropicProvider("claude-x", api_key="sk-ant", base_url=scripted_server.url)
    deltas, final = [], None
    async for event in provider.stream(CONVERSATION[:2], [{"type": "function", "function": {
            "name": "weather", "parameters": {"type": "object"}}}]):  # fmt: skip
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            final = event
    assert deltas == ["Let me ", "look."]
    assert final.message == {
        "role": "assistant", "content": "Let me look.",
        "tool_calls": [{"id": "toolu_9", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}],
    }  # fmt: skip
    assert final.finish_reason == "tool_calls"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 17)
    [request] = scripted_server.requests
    assert request.path == "/v1/messages"
    auth = request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
    assert "sk-ant" in auth  # the SDK version decides which header carries the key
    body = request.json
    assert body["system"] == "You are terse."
    assert body["max_tokens"] == 4096 and body["stream"] is True
    assert body["tools"] == [{"name": "weather", "input_schema": {"type": "object"}}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]}
    ]


async def test_anthropic_http_error(scripted_server) -> None:
    scripted_server.json(
        401, {"type": "error", "error": {"type": "authentication_error",
                                         "message": "invalid x-api-key"}},
    )  # fmt: skip
    provider = AnthropicProvider(api_key="bad", base_url=scripted_server.url)
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "hi"}])
    assert info.value.status == 401 and info.value.retryable is False
    assert "invalid x-api-key" in str(info.value) and "ANTHROPIC_API_KEY" in str(info.value)


# --- local provider errors (no generation) -----------------------------------------------------


def test_local_without_llama_cpp_names_the_fix(monkeypatch) -> None:
    import importlib.util

    from scratchy.errors import MissingDependencyError
    from scratchy.providers import local

    real = importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util, "find_spec", lambda n, *a: None if n == "llama_cpp" else real(n, *a)
    )
    with pytest.raises(MissingDependencyError) as info:
        resolve_provider("local:")
    message = str(info.value)
    assert info.value.package == "llama-cpp-python"
    assert "scratchy[local]" in message and 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in message


@pytest.mark.real_model
async def test_local_bad_gguf_is_a_provider_error(tmp_path) -> None:
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    provider = resolve_provider(f"local:{bad}")
    with pytest.raises(ProviderError, match="cannot load the local model"):
        await complete(provider, [{"role": "user", "content": "hi"}])


# --- the protocol and its optional capabilities ----------------------------------------------


def test_built_in_providers_implement_the_whole_protocol(monkeypatch) -> None:
    from scratchy.providers import Provider
    from scratchy.testing import FakeProvider

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    for provider in (resolve_provider("openai:gpt-4o"), resolve_provider("anthropic:"),
                     FakeProvider(), resolve_provider("fake:")):  # fmt: skip
        assert isinstance(provider, Provider), provider
        assert provider.supports_tools is True and provider.can_stream is True
        assert provider.loaded is True


async def test_minimal_provider_gets_the_defaults() -> None:
    from scratchy.providers import Provider, as_provider

    class Minimal:
        name, model, extra = "mine", "m1", "kept"

        async def stream(self, messages, tools):
            yield TextDelta("hi")

    wrapped = as_provider(Minimal())
    assert isinstance(wrapped, Provider) and not isinstance(Minimal(), Provider)
    assert (wrapped.name, wrapped.model, wrapped.extra) == ("mine", "m1", "kept")
    assert wrapped.context_window is None
    assert wrapped.supports_tools is True and wrapped.can_stream is True
    assert wrapped.settings == {}
    await wrapped.load()
    await wrapped.aclose()
    assert [e async for e in wrapped.stream([], [])] == [TextDelta("hi")]
    full = resolve_provider("fake:")
    assert as_provider(full) is full
    with pytest.raises(UsageError, match="not a provider: it needs stream"):
        as_provider(SimpleNamespace(name="x", model="y"))


async def test_fake_provider_capability_options() -> None:
    from scratchy.providers import complete
    from scratchy.testing import FakeProvider

    fake = FakeProvider(["a long answer here"], context_window=1000, can_stream=False, chunk=2,
                        supports_tools=False)  # fmt: skip
    assert (fake.context_window, fake.can_stream, fake.supports_tools) == (1000, False, False)
    events = [e async for e in fake.stream([{"role": "user", "content": "q"}], [])]
    assert len(events) == 1 and events[0].message["content"] == "a long answer here"
    assert resolve_provider("fake:", context_window=64).context_window == 64
    assert FakeProvider().context_window is None
    streaming = FakeProvider(["abcd"], chunk=2)
    question = [{"role": "user", "content": "q"}]
    kinds = [type(e).__name__ async for e in streaming.stream(question, [])]
    assert kinds == ["TextDelta", "TextDelta", "ModelResponse"]
    assert (await complete(FakeProvider(["ok"], can_stream=False), [])).message["content"] == "ok"
    with pytest.raises(UsageError, match="context_window must be a positive integer"):
        FakeProvider(context_window=0)


async def test_fake_provider_keeps_a_bounded_number_of_calls() -> None:
    from scratchy.testing import SPEC_KEEP_CALLS, FakeProvider

    fake = FakeProvider(lambda messages, tools: "ok", keep_calls=3)
    for i in range(10):
        [e async for e in fake.stream([{"role": "user", "content": f"q{i}"}], [])]
    assert fake.call_count == 10
    assert [c.last_user_text for c in fake.calls] == ["q7", "q8", "q9"]  # the latest, in order
    everything = FakeProvider(lambda messages, tools: "ok", keep_calls=None)
    for _ in range(1500):
        [e async for e in everything.stream([], [])]
    assert len(everything.calls) == everything.call_count == 1500
    none = FakeProvider(["x"], keep_calls=0)
    [e async for e in none.stream([{"role": "user", "content": "q"}], [])]
    assert (none.calls, none.call_count) == ([], 1)
    with pytest.raises(AssertionError, match="call #2 .* last user message: 'again'"):
        [e async for e in none.stream([{"role": "user", "content": "again"}], [])]
    served = resolve_provider("fake:")  # what `scratchy serve --model fake:` runs
    for _ in range(SPEC_KEEP_CALLS + 5):
        [e async for e in served.stream([{"role": "user", "content": "hi"}], [])]
    assert len(served.calls) == SPEC_KEEP_CALLS


# --- context windows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "window"),
    [
        ("openai:gpt-4o-mini", 128_000),
        ("openai:gpt-4o-2024-08-06", 128_000),
        ("openai:gpt-4.1-nano", 1_047_576),
        ("openai:o3-mini", 200_000),
        ("openai:o4-mini", 200_000),
        ("openai:gpt-3.5-turbo", 16_385),
        ("openai:gpt-4", 8_192),
        ("openai:", 128_000),  # the preset default, gpt-4o-mini
        ("anthropic:claude-sonnet-4-6", 200_000),
        ("anthropic:claude-3-5-haiku-latest", 200_000),
        ("gemini:gemini-2.0-flash", 1_048_576),
        ("gemini:gemini-1.5-flash", 1_048_576),
        ("gemini:gemini-2.5-pro", 1_048_576),
        ("groq:llama-3.1-8b-instant", 131_072),
        ("groq:llama-3.3-70b-versatile", 131_072),
        ("groq:meta-llama/llama-4-scout-17b-16e-instruct", 131_072),
        ("groq:gemma2-9b-it", 8_192),
        ("openai:some-model-of-2030", None),
        ("groq:unheard-of", None),
        ("ollama:llama3.2", None),  # whatever the server was started with: not guessed
    ],
)
def test_known_context_windows(monkeypatch, spec, window) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY"):
        monkeypatch.setenv(var, "k")
    assert resolve_provider(spec).context_window == window


def test_context_window_override(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert resolve_provider("openai:gpt-4o", context_window=50_000).context_window == 50_000
    assert resolve_provider("anthropic:", context_window=9_000).context_window == 9_000
    assert resolve_provider("x", base_url="http://h/v1", context_window=4096).context_window == 4096
    with pytest.raises(UsageError, match="context_window must be a positive integer"):
        resolve_provider("openai:gpt-4o", context_window=-1)


def test_local_context_window_is_n_ctx_and_tools_are_opt_in() -> None:
    pytest.importorskip("llama_cpp")
    provider = resolve_provider("local:", n_ctx=1024)
    assert provider.context_window == 1024
    assert provider.supports_tools is False
    assert resolve_provider("local:", tools=True).supports_tools is True


def test_streaming_false_is_reported(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert resolve_provider("openai:gpt-4o", streaming=False).can_stream is False


# --- one client per event loop, closed by aclose -----------------------------------------------


def test_one_client_per_event_loop(monkeypatch) -> None:
    import asyncio

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    for provider in (resolve_provider("openai:gpt-4o"), resolve_provider("anthropic:")):

        async def client_of_this_loop(p=provider):
            first = p.client
            assert p.client is first  # the same client for the whole loop
            return first

        one = asyncio.run(client_of_this_loop())
        two = asyncio.run(client_of_this_loop())
        assert one is not two
        assert list(provider._clients.values()) == [two]  # the ended loop's client is dropped

        async def close(p=provider):
            client = p.client
            await p.aclose()
            return client

        closed = asyncio.run(close())
        assert closed.is_closed() and provider._clients == {}


# --- switching models ------------------------------------------------------------------------


async def test_switch_model_keeps_connection_settings_and_closes_the_old(monkeypatch) -> None:
    from scratchy.providers import switch_model

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    old = resolve_provider("openai:gpt-4o", api_key="sk-given", timeout=7, temperature=0.3,
                           context_window=1234)  # fmt: skip
    assert old.settings == {"api_key": "sk-given", "timeout": 7, "temperature": 0.3,
                            "context_window": 1234}  # fmt: skip
    client = old.client
    new = await switch_model(old, "gpt-4.1")
    assert (new.name, new.model, new._api_key) == ("openai", "gpt-4.1", "sk-given")
    assert (new.timeout, new.temperature) == (7, 0.3)
    assert new.context_window == 1_047_576  # the override described the old model only
    assert client.is_closed() and old._clients == {}

    again = await switch_model(new, "openai:o3")
    assert (again.model, again._api_key) == ("o3", "sk-given")


async def test_switch_model_to_another_provider_does_not_leak_the_key(monkeypatch) -> None:
    from scratchy.providers import switch_model

    old = resolve_provider("openai:gpt-4o", api_key="sk-openai", timeout=9, max_retries=1)
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        await switch_model(old, "anthropic:claude-sonnet-4-6")
    client = old.client  # still open and usable after the failed switch
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    new = await switch_model(old, "claude-sonnet-4-6")  # a bare name with an obvious provider
    assert isinstance(new, AnthropicProvider)
    assert (new._api_key, new.timeout, new.max_retries) == ("sk-ant", 9, 1)
    assert client.is_closed()


async def test_switch_model_on_a_self_hosted_server(monkeypatch) -> None:
    from scratchy.providers import inherited_settings, switch_model

    old = resolve_provider("qwen2.5", base_url="http://127.0.0.1:9/v1", max_tokens=50)
    assert inherited_settings(old, "gpt-4o") == (
        "openai-compatible:gpt-4o",
        {"base_url": "http://127.0.0.1:9/v1", "max_tokens": 50},
    )  # a bare name stays on the server, even one that looks like OpenAI's
    new = await switch_model(old, "llama3.1:8b")
    assert (new.name, new.model, new.base_url, new.max_tokens) == (
        "openai-compatible",
        "llama3.1:8b",
        "http://127.0.0.1:9/v1",
        50,
    )
    ollama = await switch_model(new, "ollama:phi3")  # another provider: its own URL
    assert (ollama.name, ollama.base_url, ollama.max_tokens) == (
        "ollama",
        "http://127.0.0.1:11434/v1",
        50,
    )
    tagged = await switch_model(ollama, "mistral:large")  # an Ollama tag, not a provider
    assert (tagged.name, tagged.model) == ("ollama", "mistral:large")
    monkeypatch.setenv("GROQ_API_KEY", "k")
    groq = await switch_model(tagged, "groq:llama-3.1-8b-instant")
    assert (await switch_model(groq, "llama-3.3-70b-versatile")).name == "groq"  # bare: same
    with pytest.raises(UsageError, match="unknown provider 'mistral'"):
        await switch_model(groq, "mistral:large")


async def test_switch_model_closes_a_fake_and_accepts_none() -> None:
    from scratchy.providers import switch_model
    from scratchy.testing import FakeProvider

    fake = FakeProvider(["x"])
    new = await switch_model(fake, "fake:", delay=0.0)
    assert isinstance(new, FakeProvider) and new is not fake
    assert fake.closed == 1 and new.closed == 0
    assert (await switch_model(None, "fake:")).name == "fake"


# --- one error mapping for both SDKs -------------------------------------------------------------


async def test_anthropic_overloaded_is_retried_then_retryable(scripted_server) -> None:
    for _ in range(2):
        scripted_server.json(
            529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            headers={"retry-after-ms": "10"},
        )  # fmt: skip
    provider = AnthropicProvider(api_key="k", base_url=scripted_server.url, max_retries=1)
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "hi"}])
    assert info.value.status == 529 and info.value.retryable is True
    assert "Overloaded" in str(info.value) and "overloaded; try again later" in str(info.value)
    assert len(scripted_server.requests) == 2  # max_retries=1: the SDK's retry, configured once
    await provider.aclose()


@pytest.mark.real_model  # a real client against a closed port
async def test_anthropic_connection_refused_names_the_url() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = AnthropicProvider(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(ProviderError) as info:
        await complete(provider, [{"role": "user", "content": "hi"}])
    assert info.value.status is None and info.value.retryable is True
    assert f"cannot reach anthropic at http://127.0.0.1:{port}" in str(info.value)


async def test_a_refused_long_prompt_teaches_the_context_window(scripted_server) -> None:
    scripted_server.json(400, {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "prompt is too long: 150001 tokens > 150000 maximum"}})  # fmt: skip
    provider = AnthropicProvider("gateway-model", api_key="k", base_url=scripted_server.url)
    assert provider.context_window is None  # not a model name the table knows
    with pytest.raises(ProviderError, match="prompt is too long") as info:
        await complete(provider, [{"role": "user", "content": "long"}])
    assert info.value.status == 400 and info.value.retryable is False
    assert provider.context_window == 150_000

"""LocalProvider with the real SmolLM2-135M model, in process."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from scratchy.providers.base import ModelResponse, TextDelta
from scratchy.providers.local import (
    LocalProvider,
    _parse_tool_calls,
    _to_chat,
    _with_tools_prompt,
    load,
    warm_up,
)

pytestmark = pytest.mark.real_model


@pytest.fixture
def provider(gguf_path) -> LocalProvider:
    return LocalProvider(seed=1)


def generating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "scratchy-local-generate"]


async def test_short_answer_streams(provider: LocalProvider) -> None:
    await provider.load()
    deltas: list[str] = []
    final: ModelResponse | None = None
    start = time.perf_counter()
    async for event in provider.stream(
        [{"role": "system", "content": "Answer briefly."},
         {"role": "user", "content": "What is the capital of France?", "id": "extra"}],
        [],
    ):  # fmt: skip
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            final = event
    elapsed = time.perf_counter() - start
    assert final is not None and len(deltas) >= 3
    assert final.message["content"] == "".join(deltas)
    assert final.message["content"].strip()
    assert "tool_calls" not in final.message
    assert final.finish_reason in ("stop", "length")
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert elapsed < 10, f"short answer took {elapsed:.2f}s"


async def test_cancellation_stops_generation(provider: LocalProvider) -> None:
    provider.max_tokens = 512
    seen: list[str] = []
    started = asyncio.Event()

    async def consume() -> None:
        messages = [{"role": "user", "content": "Write a very long story about a dragon."}]
        async for event in provider.stream(messages, []):
            if isinstance(event, TextDelta):
                seen.append(event.text)
                if len(seen) == 3:
                    started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=20)
    cancelled_at = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - cancelled_at < 0.5
    # The worker thread notices the flag after the current token.
    deadline = time.monotonic() + 2
    while generating_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not generating_threads(), "generation kept running after cancellation"
    assert len(seen) < 100

    provider.max_tokens = 8  # the model is free again for the next request
    start = time.perf_counter()
    async for _ in provider.stream([{"role": "user", "content": "Hi"}], []):
        pass
    # Free, not queued behind the cancelled generation (seconds: a loaded CI machine is slow).
    assert time.perf_counter() - start < 30


async def test_long_history_is_trimmed_to_fit(gguf_path) -> None:
    provider = LocalProvider(n_ctx=512, max_tokens=8, seed=1)
    history = [{"role": "system", "content": "You are helpful."}]
    for i in range(150):
        history.append({"role": "user", "content": f"Message {i}: " + "tell me about apples " * 6})
        history.append({"role": "assistant", "content": "Apples are fruit. " * 6})
    llama = await provider.load()
    chat, used = provider.fit(llama, _to_chat(history))
    assert chat[0] == {"role": "system", "content": "You are helpful."}
    assert used <= provider.n_ctx - provider.max_tokens
    assert chat[-1] == _to_chat(history)[-1] and len(chat) < len(history)

    # The cut point stays put while the newer turns fit, so the prompt prefix is reused.
    longer = _to_chat([*history, {"role": "user", "content": "And pears?"}])
    assert provider.fit(llama, longer)[0][:2] == chat[:2]

    # A single message longer than the whole context keeps its end.
    huge, used = provider.fit(
        llama, _to_chat([*history, {"role": "user", "content": "word " * 900}])
    )
    assert huge[-1]["content"].strip().endswith("word") and used < provider.n_ctx

    final = None
    async for event in provider.stream(history, []):
        final = event
    assert isinstance(final, ModelResponse)
    assert 0 < final.usage.input_tokens < provider.n_ctx


async def test_tool_history_and_tools_are_handled_as_text(provider: LocalProvider) -> None:
    provider.max_tokens = 16
    history = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function",
             "function": {"name": "calc", "arguments": '{"e": "2+2"}'}}
        ]},
        {"role": "tool", "tool_call_id": "c", "content": "4"},
    ]  # fmt: skip
    chat = _to_chat(history)
    assert [m["role"] for m in chat] == ["user", "assistant", "user"]
    assert "calc" in chat[1]["content"] and "4" in chat[2]["content"]
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {}}}]
    final = None
    async for event in provider.stream(history, tools):
        final = event
    assert isinstance(final, ModelResponse) and isinstance(final.message["content"], str)


def test_tool_call_text_is_parsed_only_for_offered_tools() -> None:
    tools = [{"type": "function", "function": {"name": "calc"}}]
    text = 'Sure. <tool_call>{"name": "calc", "arguments": {"e": "1+1"}}</tool_call>'
    [call] = _parse_tool_calls(text, tools)
    assert call["function"] == {"name": "calc", "arguments": '{"e": "1+1"}'}
    assert _parse_tool_calls('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', tools) == []
    assert _parse_tool_calls("<tool_call>not json</tool_call>", tools) == []


async def test_model_is_loaded_once(gguf_path) -> None:
    thread = warm_up(gguf_path)
    thread.join(timeout=30)
    first = await load(gguf_path)
    assert await load() is first
    assert await LocalProvider().load() is first
    assert LocalProvider().loaded


async def test_context_window_is_n_ctx(gguf_path) -> None:
    provider = LocalProvider(n_ctx=1024, max_tokens=4, seed=1)
    assert provider.context_window == 1024 == provider.n_ctx
    await provider.load()
    assert provider.loaded
    await provider.aclose()  # nothing to release: the model stays cached for the process
    assert provider.loaded


async def test_tools_are_described_to_the_model_only_when_asked(gguf_path) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]  # fmt: skip
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the weather in Rome?"}]  # fmt: skip
    prompt = _with_tools_prompt(_to_chat(messages), tools)
    assert len(prompt) == 2 and prompt[0]["content"].startswith("Be brief.\n\n")
    assert '"name":"get_weather"' in prompt[0]["content"] and "<tool_call>" in prompt[0]["content"]
    assert _with_tools_prompt(_to_chat(messages[1:]), tools)[0]["role"] == "system"

    async def prompt_tokens(provider: LocalProvider) -> int:
        final = None
        async for event in provider.stream(messages, tools):
            final = event
        assert isinstance(final, ModelResponse)
        return final.usage.input_tokens

    plain = LocalProvider(max_tokens=4, seed=1)
    with_tools = LocalProvider(max_tokens=4, seed=1, tools=True)
    assert (plain.supports_tools, with_tools.supports_tools) == (False, True)
    without, described = await prompt_tokens(plain), await prompt_tokens(with_tools)
    assert described > without + 30  # the schemas reached the model's prompt

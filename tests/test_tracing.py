"""Issue 17, traces: OpenTelemetry spans of every turn with the GenAI semantic conventions.

In this process the spans go to an SDK ``TracerProvider`` given to the agent
(``Agent(tracing=provider)``) with the SDK's in-memory exporter; the global provider is never set
here (it can be set once per process), so the paths that use it (a provider configured by the
application, ``SCRATCHY_TRACING=1`` setting up the SDK, the OTLP/HTTP exporter, the server) run in
subprocesses, exporting to a real OTLP/HTTP receiver on 127.0.0.1 that decodes the protobuf.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from scratchy import Agent
from scratchy.agent import TextDelta
from scratchy.errors import ModelBehaviorError, UsageError
from scratchy.export import redact_text
from scratchy.providers.base import ModelResponse, Usage
from scratchy.testing import FakeProvider
from scratchy.tracing import CONTENT_ENV, TRACING_ENV
from tests.server_helpers import start_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (TRACING_ENV, CONTENT_ENV, "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


def by_name(spans: Any) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def everything(spans: Any) -> str:
    """All attributes, events and statuses of the spans as one text (to look for secrets)."""
    parts = []
    for s in spans:
        parts.append(json.dumps(dict(s.attributes), default=str))
        parts.append(str(s.status.description))
        for event in s.events:
            parts.append(json.dumps(dict(event.attributes), default=str))
    return "\n".join(parts)


# -- the span tree ---------------------------------------------------------------------------


async def test_a_turn_with_two_tool_calls_is_one_tree_with_the_genai_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fake = FakeProvider(
        [
            FakeProvider.tool_calls(("add", {"a": 2, "b": 3}), ("multiply", {"a": 4, "b": 5})),
            "5 and 20",
        ]
    )
    agent = Agent(provider=fake, tools=[add, multiply], autosave=False, tracing=provider)
    assert await agent.chat("Compute", session_id="project-x") == "5 and 20"

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "chat fake-model", "execute_tool add", "execute_tool multiply", "chat fake-model",
        "invoke_agent",
    ]  # fmt: skip
    root = spans[-1]
    assert root.parent is None and root.kind is SpanKind.INTERNAL
    for child in spans[:-1]:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        assert child.start_time >= root.start_time and child.end_time <= root.end_time
        assert child.status.status_code is StatusCode.UNSET
    assert [s.start_time for s in spans[:-1]] == sorted(s.start_time for s in spans[:-1])

    assert dict(root.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.conversation.id": "project-x",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "fake-model",
        "gen_ai.usage.input_tokens": sum(
            s.attributes["gen_ai.usage.input_tokens"] for s in spans if s.name.startswith("chat")
        ),
        "gen_ai.usage.output_tokens": 3,  # "5 and 20": three words
        "gen_ai.usage.cost": 0.0,  # a scripted model is free
    }
    first, second = spans[0], spans[3]
    assert first.kind is SpanKind.INTERNAL  # an in-process model (CLIENT for remote ones)
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "fake"
    assert first.attributes["gen_ai.request.model"] == "fake-model"
    assert first.attributes["gen_ai.conversation.id"] == "project-x"
    assert first.attributes["gen_ai.request.stream"] is True
    assert first.attributes["gen_ai.usage.output_tokens"] == 0
    assert second.attributes["gen_ai.usage.output_tokens"] == 3
    assert (
        second.attributes["gen_ai.usage.input_tokens"]
        > first.attributes["gen_ai.usage.input_tokens"]
    )
    assert second.attributes["gen_ai.response.time_to_first_chunk"] >= 0

    calls = agent.sessions["project-x"].messages[2]["tool_calls"]
    for span, call, name, description in zip(
        spans[1:3], calls, ("add", "multiply"), ("Add two numbers.", "Multiply two numbers."),
        strict=True,
    ):  # fmt: skip
        assert dict(span.attributes) == {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": "project-x",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call["id"],
            "gen_ai.tool.type": "function",
            "gen_ai.tool.description": description,
        }
        assert span.kind is SpanKind.INTERNAL
    # content capture is off by default: no message, argument or result anywhere
    assert "Compute" not in everything(spans) and "5 and 20" not in everything(spans)


async def test_turns_of_one_session_share_the_conversation_id_and_an_agent_name(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    agent = Agent(provider=FakeProvider(["a", "b", "c"]), autosave=False, tracing=provider)
    agent.name = "Helper"  # type: ignore[attr-defined]
    await agent.chat("one", session_id="s1")
    await agent.chat("two", session_id="s1")
    await agent.chat("three", session_id="s2")
    turns = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert [s.name for s in turns] == ["invoke_agent Helper"] * 3
    assert [s.attributes["gen_ai.conversation.id"] for s in turns] == ["s1", "s1", "s2"]
    assert {s.attributes["gen_ai.agent.name"] for s in turns} == {"Helper"}
    assert len({s.context.trace_id for s in turns}) == 3  # one trace per turn


async def test_spans_made_by_tools_and_providers_nest_under_theirs(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    inner = provider.get_tracer("app")

    def lookup(key: str) -> str:
        """Look a key up."""
        with inner.start_as_current_span("db query"):
            return key.upper()

    class HttpProvider(FakeProvider):
        async def stream(self, messages, tools):  # type: ignore[no-untyped-def]
            with inner.start_as_current_span("POST /v1/chat"):
                async for item in super().stream(messages, tools):
                    yield item

    fake = HttpProvider([FakeProvider.tool_call("lookup", key="k"), "K"])
    agent = Agent(provider=fake, tools=[lookup], autosave=False, tracing=provider)
    seen: list[bool] = []
    agent.callbacks.on_token = lambda text: seen.append(
        __import__("opentelemetry.trace").trace.get_current_span().get_span_context().is_valid
    )
    await agent.chat("go")
    spans = by_name(exporter.get_finished_spans())
    assert spans["db query"].parent.span_id == spans["execute_tool lookup"].context.span_id
    http = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/chat"]
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat fake-model"]
    assert [h.parent.span_id for h in http] == [c.context.span_id for c in chats]
    # the turn's context never leaks into the code consuming the turn's events
    assert seen == [False]
    from opentelemetry import trace

    assert not trace.get_current_span().get_span_context().is_valid


async def test_a_remote_model_call_records_the_server_the_settings_and_the_response(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    raw = SimpleNamespace(model="gpt-4o-2024-08-06", id="chatcmpl-123")
    reply = ModelResponse({"role": "assistant", "content": "Hi"}, Usage(12, 1), "stop", raw)
    fake = FakeProvider([reply], model="gpt-4o")
    fake.name = "openai"
    fake.base_url = "https://api.example.com/v1"  # type: ignore[attr-defined]
    fake.settings = {"temperature": 0.2, "max_tokens": 300, "api_key": "sk-not-recorded"}
    agent = Agent(provider=fake, autosave=False, tracing=provider)
    await agent.chat("hello")
    chat, turn = exporter.get_finished_spans()
    assert chat.name == "chat gpt-4o" and chat.kind is SpanKind.CLIENT
    assert {
        k: v for k, v in chat.attributes.items() if k != "gen_ai.response.time_to_first_chunk"
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.conversation.id": "default",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.stream": True,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 300,
        "server.address": "api.example.com",
        "server.port": 443,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 1,
    }
    assert turn.attributes["gen_ai.provider.name"] == "openai"
    assert turn.attributes["gen_ai.request.model"] == "gpt-4o"


async def test_a_turn_sampled_out_records_nothing_and_redacts_nothing(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    import scratchy.tracing

    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))

    def no_dump(*args: Any) -> str:
        raise AssertionError("content prepared for a span that is not recorded")

    monkeypatch.setattr(scratchy.tracing, "_dump", no_dump)
    fake = FakeProvider([FakeProvider.tool_call("add", a=1, b=2), "3"])
    agent = Agent(provider=fake, tools=[add], autosave=False, tracing=tp, trace_content=True)
    assert await agent.chat("1 + 2?") == "3"
    assert exporter.get_finished_spans() == ()


async def test_the_compaction_call_of_a_turn_is_a_chat_span_of_that_turn(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fake = FakeProvider(["Summary of the old turns.", "Answer."], context_window=200)
    agent = Agent(provider=fake, autosave=False, tracing=provider)
    session = agent.get_session("long")
    for i in range(10):
        session.messages.append({"role": "user", "content": f"question {i} " * 10})
        session.messages.append({"role": "assistant", "content": f"answer {i} " * 10})
    assert await agent.chat("one more", session_id="long") == "Answer."
    assert any(m.get("compacted") for m in session.messages)  # it did compact
    summary, answer, turn = exporter.get_finished_spans()
    assert [summary.name, answer.name, turn.name] == ["chat fake-model"] * 2 + ["invoke_agent"]
    assert summary.parent.span_id == answer.parent.span_id == turn.context.span_id
    assert turn.attributes["gen_ai.usage.output_tokens"] == (
        summary.attributes["gen_ai.usage.output_tokens"]
        + answer.attributes["gen_ai.usage.output_tokens"]
    )


# -- errors ----------------------------------------------------------------------------------


async def test_a_model_error_is_recorded_on_the_chat_and_turn_spans_redacted(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    error = ModelBehaviorError(f"the server said no to api_key={SECRET}", provider="fake")
    agent = Agent(provider=FakeProvider([error]), autosave=False, tracing=provider)
    with pytest.raises(ModelBehaviorError):
        await agent.chat("hello")
    chat, turn = exporter.get_finished_spans()
    assert (chat.name, turn.name) == ("chat fake-model", "invoke_agent")
    for span in (chat, turn):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "scratchy.errors.ModelBehaviorError"
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == "scratchy.errors.ModelBehaviorError"
        assert "the server said no to api_key=[REDACTED]" in event.attributes["exception.message"]
        assert "Traceback" in event.attributes["exception.stacktrace"]
    assert "[REDACTED]" in chat.status.description
    assert SECRET not in everything([chat, turn])


async def test_tool_errors_are_recorded_on_their_spans_and_the_turn_goes_on(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def deploy(target: str) -> str:
        """Deploy."""
        raise RuntimeError(f"cannot reach {target} with password=hunter22")

    def wipe() -> str:
        """Wipe everything."""
        return "wiped"

    from scratchy.tools import Tool

    wipe_tool = Tool.from_function(wipe, needs_approval=True)
    fake = FakeProvider(
        [
            FakeProvider.tool_calls(("deploy", {"target": "prod"}), ("nosuch", {}), ("wipe", {})),
            "It failed.",
        ]
    )
    agent = Agent(
        provider=fake, tools=[deploy, wipe_tool], autosave=False, tracing=provider,
        tool_approval="deny",
    )  # fmt: skip
    assert await agent.chat("ship it") == "It failed."
    spans = by_name(exporter.get_finished_spans())
    failed = spans["execute_tool deploy"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    (event,) = failed.events
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "cannot reach prod with password=[REDACTED]"
    assert "in deploy" in event.attributes["exception.stacktrace"]  # the tool's own frame
    unknown = spans["execute_tool nosuch"]
    assert unknown.status.status_code is StatusCode.ERROR
    assert unknown.attributes["error.type"] == "unknown_tool"
    assert "no tool named 'nosuch'" in unknown.status.description
    refused = spans["execute_tool wipe"]
    assert refused.attributes["error.type"] == "tool_error"
    assert "did not approve" in refused.status.description
    turn = spans["invoke_agent"]
    assert turn.status.status_code is StatusCode.UNSET and "error.type" not in turn.attributes
    assert "hunter22" not in everything(exporter.get_finished_spans())


async def test_a_cancelled_turn_ends_its_spans_as_cancelled(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    agent = Agent(provider=FakeProvider(["x" * 400], delay=0.05, chunk=4), autosave=False,
                  tracing=provider)  # fmt: skip
    started = asyncio.Event()

    async def run() -> None:
        async for event in agent.stream("go"):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    chat, turn = exporter.get_finished_spans()
    for span in (chat, turn):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"
        assert span.status.description == "cancelled (CancelledError)"
    assert agent.sessions["default"].messages[-1] == {"role": "user", "content": "go"}


async def test_a_consumer_that_stops_early_ends_the_spans_without_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    agent = Agent(provider=FakeProvider(["a long answer"], chunk=2), autosave=False,
                  tracing=provider)  # fmt: skip
    stream = agent.stream("go")
    async for _ in stream:
        break
    await stream.aclose()
    del stream  # the turn is closed when it is collected, as an untraced one is
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["chat fake-model", "invoke_agent"]
    assert all(s.status.status_code is StatusCode.UNSET for s in exporter.get_finished_spans())


# -- content capture -------------------------------------------------------------------------


def _content_agent(provider: TracerProvider, **kwargs: Any) -> Agent:
    def login(user: str, password: str) -> str:
        """Log in."""
        return f"logged in; session token: Bearer {SECRET}"

    fake = FakeProvider(
        [
            FakeProvider.tool_call("login", user="ann", password="hunter22"),
            f"Done. OPENAI_API_KEY={SECRET}",
        ]
    )
    return Agent(provider=fake, tools=[login], autosave=False, tracing=provider, **kwargs)


async def test_message_contents_are_not_recorded_unless_asked_for(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _content_agent(provider).chat("My name is Ann")
    monkeypatch.setenv(CONTENT_ENV, "true")
    await _content_agent(provider, trace_content=False).chat("My name is Ann")  # the arg wins
    spans = exporter.get_finished_spans()
    assert len(spans) == 8
    text = everything(spans)
    for word in (
        "Ann",
        "ann",
        "Done",
        "logged in",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    ):
        assert word not in text


@pytest.mark.parametrize("how", ["argument", "env true", "env SPAN_ONLY"])
async def test_message_contents_on_request_follow_the_conventions_and_are_redacted(
    how: str,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if how == "argument":
        agent = _content_agent(provider, trace_content=True)
    else:
        monkeypatch.setenv(CONTENT_ENV, how.split()[1])
        agent = _content_agent(provider)
    await agent.chat(f"My name is Ann, my key is {SECRET}")
    spans = by_name(exporter.get_finished_spans())
    turn = spans["invoke_agent"]
    assert json.loads(turn.attributes["gen_ai.input.messages"]) == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "My name is Ann, my key is [REDACTED]"}],
        }
    ]
    assert json.loads(turn.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Done. OPENAI_API_KEY=[REDACTED]"}],
            "finish_reason": "stop",
        }
    ]
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat fake-model"]
    first_in = json.loads(chats[0].attributes["gen_ai.input.messages"])
    assert [m["role"] for m in first_in] == ["system", "user"]
    assert first_in[1]["parts"][0]["content"] == "My name is Ann, my key is [REDACTED]"
    (first_out,) = json.loads(chats[0].attributes["gen_ai.output.messages"])
    assert first_out["finish_reason"] == "tool_call"
    (call_part,) = first_out["parts"]
    assert call_part["type"] == "tool_call" and call_part["name"] == "login"
    assert call_part["arguments"] == {"user": "ann", "password": "[REDACTED]"}
    second_in = json.loads(chats[1].attributes["gen_ai.input.messages"])
    assert [m["role"] for m in second_in] == ["system", "user", "assistant", "tool"]
    result = redact_text(f"logged in; session token: Bearer {SECRET}")
    assert SECRET not in result  # as an export redacts it
    assert second_in[3]["parts"] == [
        {"type": "tool_call_response", "id": call_part["id"], "result": result}
    ]
    tool = spans["execute_tool login"]
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {
        "user": "ann",
        "password": "[REDACTED]",
    }
    assert tool.attributes["gen_ai.tool.call.result"] == result
    text = everything(exporter.get_finished_spans())
    assert SECRET not in text and "hunter22" not in text
    # and the session itself keeps what was said (redaction is for the trace only)
    assert SECRET in agent.sessions["default"].messages[1]["content"]


# -- switching it on and off -----------------------------------------------------------------


def test_a_bad_tracing_value_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="tracing must be True, False, None or an OpenTelemetry"):
        Agent(provider=FakeProvider([]), autosave=False, tracing="yes")


@pytest.mark.parametrize(
    ("value", "kept"),
    [(None, None), ("", None), ("1", True), ("TRUE", True), ("on", True), ("0", False),
     ("off", False)],
)  # fmt: skip
def test_scratchy_tracing_is_read_when_the_agent_is_created(
    value: str | None, kept: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is not None:
        monkeypatch.setenv(TRACING_ENV, value)
    agent = Agent(provider=FakeProvider([]), autosave=False)
    assert agent.tracing is kept
    assert Agent(provider=FakeProvider([]), autosave=False, tracing=False).tracing is False


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SCRATCHY_"))}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


TURN = """
import asyncio, sys
from scratchy import Agent
from scratchy.testing import FakeProvider
agent = Agent(provider=FakeProvider(["hi"] * 3), autosave=False)
asyncio.run(agent.chat("hello"))
"""


def test_off_by_default_opentelemetry_is_never_imported() -> None:
    loaded = "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    assert _python(TURN + loaded) == ("[]\n", "")
    assert _python(TURN + loaded, {TRACING_ENV: "0"}) == ("[]\n", "")
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import scratchy; from scratchy import Agent"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True,
        check=True,
    ).stderr  # fmt: skip
    assert "scratchy.tracing" in timing and "opentelemetry" not in timing


GLOBAL = """
import asyncio, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from scratchy import Agent
from scratchy.testing import FakeProvider

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

def count(**kwargs):
    agent = Agent(provider=FakeProvider(["hi"]), autosave=False, **kwargs)
    asyncio.run(agent.chat("hello"))
    n = len(exporter.get_finished_spans())
    exporter.clear()
    return n

before = count()
trace.set_tracer_provider(provider)
print(before, count(), count(tracing=False))
os.environ["SCRATCHY_TRACING"] = "0"
print(count(), count(tracing=True))
"""


def test_a_tracer_provider_configured_by_the_application_turns_it_on() -> None:
    assert _python(GLOBAL)[0].split() == ["0", "2", "0", "0", "2"]


def test_without_the_sdk_one_line_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        + TURN
        + "asyncio.run(agent.chat('again'))\nprint('replied')"
    )
    assert _python(code, {TRACING_ENV: "1"}) == (
        "replied\n",
        "Tracing is on but the OpenTelemetry SDK is not installed: pip install "
        "'scratchy[otel]' (or configure a TracerProvider in the application)\n",
    )


def test_a_tracing_value_that_is_not_understood_is_said_once() -> None:
    assert _python(TURN + "print('replied')", {TRACING_ENV: "maybe"}) == (
        "replied\n",
        "SCRATCHY_TRACING='maybe' is not understood: use 1 or 0\n",
    )


# -- the OTLP/HTTP exporter, end to end ------------------------------------------------------


async def test_spans_carry_the_price_of_their_calls_and_the_turn_its_total(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from scratchy.providers.base import ModelResponse, Usage

    from .test_cost import genai_nano

    call = FakeProvider.tool_calls(("add", {"a": 2, "b": 3}))
    replies = [
        ModelResponse(call, Usage(1000, 20)),
        ModelResponse({"role": "assistant", "content": "5"}, Usage(1100, 1)),
    ]
    priced = FakeProvider(replies, name="openai", model="gpt-4o-mini")
    agent = Agent(provider=priced, tools=[add], autosave=False, tracing=provider)
    await agent.chat("Add", session_id="p")
    spans = by_name(exporter.get_finished_spans())
    nanos = [genai_nano("gpt-4o-mini", "openai", input_tokens=i, output_tokens=o)
             for i, o in ((1000, 20), (1100, 1))]  # fmt: skip
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert [s.attributes["gen_ai.usage.cost"] for s in chats] == [n / 10**9 for n in nanos]
    assert spans["invoke_agent"].attributes["gen_ai.usage.cost"] == sum(nanos) / 10**9
    assert "gen_ai.usage.cost" not in spans["execute_tool add"].attributes

    exporter.clear()  # a model without a known price: no cost on its span or on the turn
    unknown = FakeProvider([ModelResponse({"role": "assistant", "content": "hi"}, Usage(5, 1))],
                           name="openai", model="no-such-model-9")  # fmt: skip
    agent = Agent(provider=unknown, autosave=False, tracing=provider)
    await agent.chat("Hi", session_id="q")
    assert all("gen_ai.usage.cost" not in s.attributes for s in exporter.get_finished_spans())

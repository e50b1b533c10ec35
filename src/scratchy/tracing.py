"""OpenTelemetry traces of agent turns, following the GenAI semantic conventions.

Off unless asked for: ``Agent(tracing=True)``, ``SCRATCHY_TRACING=1``, an OpenTelemetry
``TracerProvider`` configured by the application (its global one), or
``Agent(tracing=provider)`` for a provider of its own. Each turn is one ``invoke_agent`` span;
each model call a child ``chat {model}`` span and each tool call an ``execute_tool {name}``
span, all with ``gen_ai.conversation.id`` = the session id, so a tracing tool groups a session's
turns. Message contents are recorded only on request (``Agent(trace_content=True)`` or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``), and redacted as exports are
(:func:`scratchy.export.redact_messages`).

Tracing on with no provider configured sets up the OpenTelemetry SDK once, exporting with
OTLP over HTTP to what the standard ``OTEL_EXPORTER_OTLP_*`` variables say (or, with
``OTEL_TRACES_EXPORTER=console``, printing the spans on stderr); that needs
``pip install 'scratchy[otel]'``.

Nothing here imports OpenTelemetry while tracing is off: the hooks in the agent loop
(:func:`trace_turn`, :func:`trace_chat`, :func:`trace_tool`) then hand back what they were given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .cost import NANO_PER_USD
from .errors import UsageError

if TYPE_CHECKING:
    from .agent import Agent, Event
    from .messages import Message
    from .providers.base import ModelResponse, Provider, ToolSchema
    from .tools import ToolRegistry

logger = logging.getLogger("scratchy")

TRACING_ENV = "SCRATCHY_TRACING"
"""``1`` turns tracing on for every agent that does not say otherwise; ``0`` turns it off even
when the application has configured a tracer provider."""
CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The GenAI conventions' switch for recording message contents (``true``, ``SPAN_ONLY``...)."""

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})
_CONTENT_ON = frozenset({"1", "true", "yes", "on", "span_only", "span_and_event"})
COST_ATTRIBUTE = "gen_ai.usage.cost"
"""The price of a model call (``chat`` span) or of a turn's calls (``invoke_agent``), in US
dollars; absent when a call's price is unknown (no standard name yet: the one tools read most)."""
_PROVIDER_NAMES = {"gemini": "gcp.gemini", "xai": "x_ai", "mistral": "mistral_ai"}
_IN_PROCESS = frozenset({"local", "fake"})
_HINT = (
    "Tracing is on but the OpenTelemetry SDK is not installed: pip install 'scratchy[otel]' "
    "(or configure a TracerProvider in the application)"
)

_active: ContextVar[_Turn | None] = ContextVar("scratchy_trace", default=None)
_tracers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_setup_done = False
_warned: set[str] = set()


def check(setting: Any) -> Any:
    """The value an agent keeps for ``Agent(tracing=setting)``: ``setting`` itself, or for None
    what ``SCRATCHY_TRACING`` says (True, False, or None: unset, so on while the application
    has configured a tracer provider). Anything else is a ``UsageError``."""
    if setting is None:
        value = os.environ.get(TRACING_ENV, "").strip().lower()
        if not value:
            return None
        if value in _ON or value in _OFF:
            return value in _ON
        _warn_once("env", f"{TRACING_ENV}={value!r} is not understood: use 1 or 0")
        return None
    if isinstance(setting, bool) or callable(getattr(setting, "get_tracer", 0)):
        return setting
    raise UsageError(
        f"tracing must be True, False, None or an OpenTelemetry TracerProvider, not {setting!r}"
    )


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning("%s", message)


def _configured_provider() -> Any:
    """The application's global tracer provider, or None when it has set none (the API's
    default proxy). OpenTelemetry is not imported for this: an application that configured a
    provider has imported it already."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider


def _exporter() -> Any:
    """The span exporter that ``OTEL_TRACES_EXPORTER`` names (default ``otlp``), or None."""
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "none":
        return None
    if name == "console":  # on stderr: a command's output (stdout) stays what it was
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    if name != "otlp":
        _warn_once("exporter", f"OTEL_TRACES_EXPORTER={name} is not supported: use otlp or console")
        return None
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip().lower() == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            _warn_once(
                "grpc",
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs pip install "
                "opentelemetry-exporter-otlp-proto-grpc; or use http/protobuf",
            )
            return None
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _setup_sdk() -> Any:
    """Configure the SDK as the global tracer provider (once); None when it is not installed."""
    global _setup_done
    provider = _configured_provider()
    if provider is not None or _setup_done:
        return provider
    _setup_done = True
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        exporter = _exporter()
    except ImportError:
        _warn_once("sdk", _HINT)
        return None
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "scratchy"})
    )
    if exporter is not None:
        console = type(exporter).__name__ == "ConsoleSpanExporter"
        processor = SimpleSpanProcessor if console else BatchSpanProcessor
        provider.add_span_processor(processor(exporter))
    trace.set_tracer_provider(provider)
    return _configured_provider()


def setup() -> Any:
    """Make the OpenTelemetry SDK the application's tracer provider, exporting as the standard
    ``OTEL_*`` variables say, unless a provider is configured already; what the first traced
    turn does by itself. Returns the provider, or None when the SDK is not installed (said
    once, in one line)."""
    return _setup_sdk()


def setup_if_asked() -> None:
    """:func:`setup` when ``SCRATCHY_TRACING=1``: ``scratchy serve`` calls it as each worker
    starts, so that its first request is traced like the others."""
    if os.environ.get(TRACING_ENV, "").strip().lower() in _ON:
        _setup_sdk()


def _provider_for(setting: Any) -> Any:
    """The tracer provider for this turn of an agent whose ``tracing`` is ``setting`` (see
    :func:`check`), or None: off."""
    if setting is None:
        return _configured_provider()
    if setting is False:
        return None
    if setting is True:
        return _setup_sdk()
    return setting


def _tracer(provider: Any) -> Any:
    try:
        return _tracers[provider]
    except (KeyError, TypeError):
        from . import __version__

        tracer = provider.get_tracer("scratchy", __version__)
        with contextlib.suppress(TypeError):  # a provider that cannot be weakly referenced
            _tracers[provider] = tracer
        return tracer


def _capture(setting: bool | None) -> bool:
    if setting is not None:
        return bool(setting)
    return os.environ.get(CONTENT_ENV, "").strip().lower() in _CONTENT_ON


# -- the hooks of the agent loop -------------------------------------------------------------


def trace_turn(
    agent: Agent, text: str, session_id: str, turn: AsyncIterator[Event]
) -> AsyncIterator[Event]:
    """The events of ``turn``, inside an ``invoke_agent`` span when tracing is on for ``agent``
    (else ``turn`` itself)."""
    provider = _provider_for(agent.tracing)
    if provider is None:
        return turn
    state = _Turn(agent, _tracer(provider), session_id, _capture(agent.trace_content))
    return state.run(text, turn)


def trace_chat(
    provider: Provider, messages: list[Message], tools: list[ToolSchema]
) -> AsyncIterator[Any]:
    """``provider.stream(messages, tools)``, inside a ``chat`` span during a traced turn."""
    state = _active.get()
    if state is None:
        return provider.stream(messages, tools)
    return state.child(state.chat(provider, messages, tools))


def trace_tool(
    events: AsyncIterator[Event], call: Mapping[str, Any], tools: ToolRegistry
) -> AsyncIterator[Event]:
    """The events of one tool call, inside an ``execute_tool`` span during a traced turn."""
    state = _active.get()
    if state is None:
        return events
    return state.child(state.tool(events, call, tools))


# -- spans -----------------------------------------------------------------------------------


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _fail(span: Any, exc: BaseException) -> None:
    """Record an error on ``span``: ``error.type``, an ERROR status and an ``exception`` event,
    with the message and stack trace redacted."""
    from opentelemetry.trace import Status, StatusCode

    from .export import redact_text

    span.set_attribute("error.type", _error_type(exc))
    if not isinstance(exc, Exception):  # cancelled (Ctrl-C, a client gone): no stack trace
        span.set_status(Status(StatusCode.ERROR, f"cancelled ({type(exc).__name__})"))
        return
    import traceback

    message = redact_text(str(exc))
    stack = redact_text("".join(traceback.format_exception(exc)))
    span.record_exception(
        exc, attributes={"exception.message": message, "exception.stacktrace": stack}
    )
    span.set_status(Status(StatusCode.ERROR, message[:500] or type(exc).__name__))


async def _around(
    span: Any,
    context: Any,
    state: _Turn,
    iterator: AsyncIterator[Any],
    observe: Callable[[Any], None],
    finish: Callable[[], None],
    children: list[Any] | None = None,
) -> AsyncIterator[Any]:
    """The items of ``iterator`` inside ``span``: each step runs with ``context`` current (and
    ``state`` the active turn), set and reset within the step, so that nothing leaks into the
    consumer between two items. ``observe`` sees each item; an error is recorded on the span;
    at the end ``finish`` adds the last attributes and the span ends (after ``children``, the
    spans of a turn that stopped early, so that none outlives its parent)."""
    otel_context = _otel().context
    it = iterator.__aiter__()
    done = False
    try:
        while True:
            token = otel_context.attach(context)
            mark = _active.set(state)
            try:
                item = await it.__anext__()
            except StopAsyncIteration:
                done = True
                return
            finally:
                _active.reset(mark)
                otel_context.detach(token)
            observe(item)
            yield item
    except GeneratorExit:
        raise
    except BaseException as exc:
        done = True
        _fail(span, exc)
        raise
    finally:
        try:
            if not done:  # the consumer stopped early: close the inner iterator now, inside
                await _aclose(it, context, state)
            for child in children or ():
                await _aclose(child, None, state)
            finish()
        finally:
            span.end()


async def _aclose(it: Any, context: Any, state: _Turn) -> None:
    close = getattr(it, "aclose", None)
    if close is None:
        return
    otel_context = _otel().context
    token = otel_context.attach(context) if context is not None else None
    mark = _active.set(state)
    try:
        await close()
    except Exception as exc:  # the span still ends
        logger.warning("Closing a turn that stopped early failed: %s", exc)
    finally:
        _active.reset(mark)
        if token is not None:
            otel_context.detach(token)


class _Otel:
    """The OpenTelemetry API modules, imported on the first traced turn."""

    def __init__(self) -> None:
        from opentelemetry import context, trace

        self.context = context
        self.trace = trace


_api: _Otel | None = None


def _otel() -> _Otel:
    global _api
    if _api is None:
        _api = _Otel()
    return _api


class _Turn:
    """The spans of one traced turn."""

    def __init__(self, agent: Agent, tracer: Any, session_id: str, content: bool) -> None:
        self.tracer = tracer
        self.content = content
        self.parent = _otel().context.get_current()
        provider = agent._current_provider()
        self.base: dict[str, Any] = {"gen_ai.conversation.id": session_id}
        if provider is not None:
            self.base["gen_ai.provider.name"] = _PROVIDER_NAMES.get(provider.name, provider.name)
        self.model = provider.model if provider is not None else None
        self.agent_name = getattr(agent, "name", None)
        self.usage = [0, 0]
        self.cost: list[int | None] = []  # each model call's price in nano-dollars (None: unknown)
        self.context: Any = None
        self.children: list[Any] = []

    def child(self, spanned: Any) -> Any:
        """Remember a child span's generator, to end it before the turn's span when a turn
        stops early (its consumer left it in the middle of a model or tool call)."""
        self.children.append(spanned)
        return spanned

    def run(self, text: str, turn: AsyncIterator[Event]) -> AsyncIterator[Event]:
        from .agent import FinalEvent

        trace = _otel().trace
        attributes = {"gen_ai.operation.name": "invoke_agent", **self.base}
        name = "invoke_agent"
        if isinstance(self.agent_name, str) and self.agent_name:
            attributes["gen_ai.agent.name"] = self.agent_name
            name = f"invoke_agent {self.agent_name}"
        if self.model:
            attributes["gen_ai.request.model"] = self.model
        span = self.tracer.start_span(name, self.parent, trace.SpanKind.INTERNAL, attributes)
        self.context = trace.set_span_in_context(span, self.parent)
        if not span.is_recording():  # sampled out: its children are too, record no content
            self.content = False
        elif self.content:
            span.set_attribute("gen_ai.input.messages", _dump([{"role": "user", "content": text}]))
        final: list[str] = []

        def observe(event: Any) -> None:
            if isinstance(event, FinalEvent):
                final.append(event.text)

        def finish() -> None:
            span.set_attribute("gen_ai.usage.input_tokens", self.usage[0])
            span.set_attribute("gen_ai.usage.output_tokens", self.usage[1])
            if self.cost and None not in self.cost:  # a partial sum would understate it
                span.set_attribute(COST_ATTRIBUTE, sum(c or 0 for c in self.cost) / NANO_PER_USD)
            if self.content and final:
                out = {"role": "assistant", "content": final[-1]}
                span.set_attribute("gen_ai.output.messages", _dump([out], "stop"))

        return _around(span, self.context, self, turn, observe, finish, self.children)

    def chat(
        self, provider: Provider, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[Any]:
        from .providers.base import ModelResponse, TextDelta

        trace = _otel().trace
        model = provider.model
        attributes = {
            "gen_ai.operation.name": "chat",
            **self.base,
            "gen_ai.provider.name": _PROVIDER_NAMES.get(provider.name, provider.name),
            "gen_ai.request.model": model,
            "gen_ai.request.stream": bool(provider.can_stream),
            **_server(provider),
        }
        settings = getattr(provider, "settings", None) or {}
        for key in ("temperature", "max_tokens", "top_p", "seed"):
            value = settings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[f"gen_ai.request.{key}"] = value
        if self.content:
            attributes["gen_ai.input.messages"] = _dump(messages)
        kind = trace.SpanKind.INTERNAL if provider.name in _IN_PROCESS else trace.SpanKind.CLIENT
        span = self.tracer.start_span(f"chat {model}", self.context, kind, attributes)
        context = trace.set_span_in_context(span, self.context)
        started = time.perf_counter()
        seen: dict[str, Any] = {}

        def observe(item: Any) -> None:
            if isinstance(item, ModelResponse):
                seen["response"] = item
            elif "first" not in seen and isinstance(item, TextDelta):
                seen["first"] = time.perf_counter() - started

        def finish() -> None:
            if "first" in seen:
                span.set_attribute("gen_ai.response.time_to_first_chunk", seen["first"])
            if "response" in seen:
                self._response(span, seen["response"], provider)

        return _around(span, context, self, provider.stream(messages, tools), observe, finish)

    def _response(self, span: Any, response: ModelResponse, provider: Provider) -> None:
        from .cost import price_of_call

        raw = response.raw
        for key, value in (
            ("model", getattr(raw, "model", None)),
            ("id", getattr(raw, "id", None)),
        ):
            if isinstance(value, str) and value:
                span.set_attribute(f"gen_ai.response.{key}", value)
        if response.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])
        if response.usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", response.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", response.usage.output_tokens)
            self.usage[0] += response.usage.input_tokens
            self.usage[1] += response.usage.output_tokens
        nano = price_of_call(provider, response.usage)
        self.cost.append(nano)
        if nano is not None:
            span.set_attribute(COST_ATTRIBUTE, nano / NANO_PER_USD)
        if self.content:
            message = response.message
            reason = response.finish_reason or (
                "tool_call" if message.get("tool_calls") else "stop"
            )
            span.set_attribute("gen_ai.output.messages", _dump([message], reason))

    def tool(
        self, events: AsyncIterator[Event], call: Mapping[str, Any], tools: ToolRegistry
    ) -> AsyncIterator[Event]:
        from .agent import ToolResultEvent

        trace = _otel().trace
        fn = call.get("function") or {}
        name = str(fn.get("name") or "")
        found = tools.get(name)
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": self.base["gen_ai.conversation.id"],
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": str(call.get("id") or ""),
            "gen_ai.tool.type": "function",
        }
        if found is not None and found.description:
            attributes["gen_ai.tool.description"] = found.description
        if self.content:
            from .export import _redact_json_text

            attributes["gen_ai.tool.call.arguments"] = _redact_json_text(
                str(fn.get("arguments") or "{}")
            )
        span = self.tracer.start_span(f"execute_tool {name}", self.context, attributes=attributes)
        context = trace.set_span_in_context(span, self.context)
        results: list[Any] = []

        def observe(event: Any) -> None:
            if isinstance(event, ToolResultEvent):
                results.append(event)

        def finish() -> None:
            if results:
                _tool_result(span, results[-1], found is None, self.content)

        return _around(span, context, self, events, observe, finish)


def _tool_result(span: Any, result: Any, unknown: bool, content: bool) -> None:
    if not result.is_error:
        if content:
            from .export import redact_text

            span.set_attribute("gen_ai.tool.call.result", redact_text(result.content))
        return
    if result.exception is not None:
        _fail(span, result.exception)
        return
    from opentelemetry.trace import Status, StatusCode

    from .export import redact_text

    span.set_attribute("error.type", "unknown_tool" if unknown else "tool_error")
    first = result.content.strip().splitlines()[0] if result.content.strip() else "tool error"
    span.set_status(Status(StatusCode.ERROR, redact_text(first)[:500]))


def _server(provider: Provider) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of a provider with a ``base_url``."""
    url = getattr(provider, "base_url", None)
    if not isinstance(url, str) or "://" not in url:
        return {}
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {}
    return {"server.address": parts.hostname, "server.port": port} if parts.hostname else {}


# -- message contents ------------------------------------------------------------------------


def _part(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    arguments: Any = fn.get("arguments") or "{}"
    try:
        arguments = json.loads(arguments)
    except (TypeError, ValueError):
        pass
    return {
        "type": "tool_call",
        "id": call.get("id"),
        "name": fn.get("name"),
        "arguments": arguments,
    }


def _convert(message: Mapping[str, Any]) -> dict[str, Any]:
    """One chat message in the GenAI conventions' shape: ``{"role", "parts": [...]}``."""
    content = message.get("content")
    if message.get("role") == "tool":
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        part = {"type": "tool_call_response", "id": message.get("tool_call_id"), "result": text}
        return {"role": "tool", "parts": [part]}
    parts: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for item in content:
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append({"type": "text", "content": item.get("text", "")})
            elif isinstance(item, dict):  # an image or a file: its kind only, never the data
                parts.append({"type": str(item.get("type") or "unknown")})
    parts.extend(_part(call) for call in message.get("tool_calls") or [])
    return {"role": message.get("role"), "parts": parts}


def _dump(messages: list[Any], finish_reason: str | None = None) -> str:
    """Messages, redacted, as the JSON string of the conventions' message list."""
    from .export import redact_messages

    out = [_convert(m) for m in redact_messages(messages)]
    if finish_reason is not None:
        for item in out:
            item["finish_reason"] = "tool_call" if finish_reason == "tool_calls" else finish_reason
    return json.dumps(out, ensure_ascii=False, default=str)  # never fail a turn for a trace


# -- the server ------------------------------------------------------------------------------


class TraceContextMiddleware:
    """ASGI middleware: a request's W3C ``traceparent`` (and ``tracestate``) header becomes
    the parent of the turns it starts, unless a span is already current (an instrumented
    server made one). Requests without the header cost a scan of their header names."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        carrier = None
        if scope.get("type") == "http":
            for key, value in scope.get("headers") or ():
                if key in (b"traceparent", b"tracestate"):
                    carrier = carrier or {}
                    carrier[key.decode()] = value.decode("latin-1")
        if carrier is None or "traceparent" not in carrier:
            return await self.app(scope, receive, send)
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace

        if trace.get_current_span().get_span_context().is_valid:
            return await self.app(scope, receive, send)
        token = otel_context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)

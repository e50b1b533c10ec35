"""Tracing through the real exporters and the server: OTLP/HTTP to a receiver on 127.0.0.1 that
decodes the protobuf it gets, and an incoming ``traceparent`` continued by ``scratchy serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from scratchy import SessionManager
from scratchy.tracing import CONTENT_ENV, TRACING_ENV
from tests.server_helpers import start_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (TRACING_ENV, CONTENT_ENV, "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: decodes each ``ExportTraceServiceRequest``."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.content_types.append(self.headers["Content-Type"])
                receiver.requests.append(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of every span received."""
        out = []
        for request in self.requests:
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out.extend((resource, span) for span in ss.spans)
        return out

    def wait_for(self, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(span.name == name for _, span in self.spans()):
            if time.monotonic() > deadline:
                pytest.fail(f"no span {name!r} received; got {[s.name for _, s in self.spans()]}")
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for a in span.attributes:
        which = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, which) if which else None
    return out


def test_scratchy_tracing_1_exports_over_otlp_http_from_the_standard_variables(
    receiver: Receiver, tmp_path: Path
) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "list_files", "arguments": "{}"},
                        }
                    ]
                },
                "Two files.",
            ]
        )  # fmt: skip
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SCRATCHY_"))}
    environ.update(
        PYTHONPATH=str(ROOT / "src"),
        SCRATCHY_TRACING="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", "chat", "-m", f"fake:{script}", "-s",
         "otlp-demo", "--dir", str(tmp_path / "sessions"), "list them"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Two files." in proc.stdout
    receiver.wait_for("invoke_agent")  # flushed when the process exits
    assert set(receiver.paths) == {"/v1/traces"}
    assert set(receiver.content_types) == {"application/x-protobuf"}
    spans = receiver.spans()
    names = [span.name for _, span in spans]
    assert sorted(names) == sorted(
        ["invoke_agent", "chat fake-model", "execute_tool list_files", "chat fake-model"]
    )
    resource = spans[0][0]
    assert resource["service.name"] == "scratchy"
    assert resource["deployment.environment"] == "test"
    turn = next(span for _, span in spans if span.name == "invoke_agent")
    assert attrs(turn)["gen_ai.conversation.id"] == "otlp-demo"
    assert attrs(turn)["gen_ai.operation.name"] == "invoke_agent"
    for _, span in spans:
        assert span.trace_id == turn.trace_id
        if span is not turn:
            assert span.parent_span_id == turn.span_id
    tool = next(span for _, span in spans if span.name == "execute_tool list_files")
    assert attrs(tool)["gen_ai.tool.call.id"] == "c1"
    assert attrs(tool)["gen_ai.tool.name"] == "list_files"
    scope = receiver.requests[0].resource_spans[0].scope_spans[0].scope
    assert scope.name == "scratchy"
    assert SessionManager(str(tmp_path / "sessions")).load_session("otlp-demo") is not None


# -- the server ------------------------------------------------------------------------------


def test_the_server_continues_the_trace_of_an_incoming_traceparent(
    receiver: Receiver,
    start_server: Any,  # noqa: F811
) -> None:
    server = start_server(
        "--model", "fake:", workers=1,
        env={"SCRATCHY_TRACING": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
             "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "api"},
    )  # fmt: skip
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = f"00-{trace_id}-{parent_id}-01"
    with server.client() as client:
        answer = client.post(
            "/v1/sessions/traced/turns", json={"input": "hello"},
            headers={"traceparent": traceparent},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        untraced = client.post("/v1/sessions/other/turns", json={"input": "no header"})
        assert untraced.status_code == 200
        openai = client.post(
            "/v1/chat/completions",
            json={"model": "scratchy", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": f"00-{trace_id[::-1]}-{parent_id[::-1]}-01"},
        )
        assert openai.status_code == 200, openai.text
    server.close()  # a worker that stops flushes what it has not exported yet
    deadline = time.monotonic() + 30
    while sum(span.name == "invoke_agent" for _, span in receiver.spans()) < 3:
        assert time.monotonic() < deadline, [s.name for _, s in receiver.spans()]
        time.sleep(0.05)
    spans = [span for _, span in receiver.spans()]
    by_id = {span.span_id: span for span in spans}

    def root_parent(span: Any) -> tuple[bytes, list[str]]:
        """The parent id above the highest received ancestor, and the names on the way."""
        names = [span.name]
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            names.append(span.name)
        return span.parent_span_id, names

    turns = {attrs(s)["gen_ai.conversation.id"]: s for s in spans if s.name == "invoke_agent"}
    traced = turns["traced"]
    assert traced.trace_id.hex() == trace_id
    parent, path = root_parent(traced)
    assert parent.hex() == parent_id, path  # directly, or through FastAPI's own request spans
    other = turns["other"]
    assert other.trace_id.hex() != trace_id
    assert root_parent(other)[0] == b""  # a trace of its own
    (stateless,) = [s for cid, s in turns.items() if cid.startswith("stateless-")]
    assert stateless.trace_id.hex() == trace_id[::-1]
    assert root_parent(stateless)[0].hex() == parent_id[::-1]
    assert {r["service.name"] for r, _ in receiver.spans()} == {"api"}
    chats = [s for s in spans if s.name == "chat fake-model"]
    assert sorted(c.parent_span_id for c in chats) == sorted(t.span_id for t in turns.values())


async def test_the_middleware_makes_a_traceparent_the_current_context() -> None:
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    from scratchy.tracing import TraceContextMiddleware

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())

    header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    middleware = TraceContextMiddleware(app)
    await middleware({"type": "http", "headers": [(b"traceparent", header)]}, None, None)
    await middleware({"type": "http", "headers": [(b"accept", b"*/*")]}, None, None)
    mine = trace.NonRecordingSpan(
        trace.SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    token = otel_context.attach(trace.set_span_in_context(mine))
    try:  # a span is current already (an instrumented server): it stays the parent
        await middleware({"type": "http", "headers": [(b"traceparent", header)]}, None, None)
    finally:
        otel_context.detach(token)
    remote, none, kept = seen
    assert remote.is_remote and f"{remote.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert f"{remote.span_id:016x}" == "00f067aa0ba902b7"
    assert not none.is_valid
    assert kept.trace_id == 0x1234
    assert not trace.get_current_span().get_span_context().is_valid  # detached afterwards

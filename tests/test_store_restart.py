"""Redis and PostgreSQL restarted in the middle of appends made through ``SessionManager``.

Every append that returned must be stored exactly once; an append that raised
``StoreUnavailableError`` may be missing (or, if the server committed it before the connection
dropped, present once), but nothing is ever duplicated, and appends after the restart succeed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from scratchy.errors import StoreUnavailableError
from scratchy.sessions import SessionManager
from tests.servers import PostgresServer, RedisServer


def _url(kind: str, server: RedisServer | PostgresServer) -> str:
    tag = uuid.uuid4().hex[:10]
    if kind == "redis":
        return f"{server.url}?prefix=restart-{tag}:&retries=2"
    return f"{server.url}?schema=restart_{tag}&pool_timeout=1"


def _check(sm: SessionManager, acked: list[str], failed: list[str]) -> None:
    stored = [m["content"] for m in sm.load_session("s") or []]
    counts = Counter(stored)
    assert all(n == 1 for n in counts.values()), "an append was stored twice"
    assert all(counts[c] == 1 for c in acked), "an acknowledged append was lost"
    assert set(stored) <= set(acked) | set(failed)
    # each worker's acknowledged appends keep their order
    order = {c: i for i, c in enumerate(stored)}
    for prefix in {c.split("-")[0] for c in acked}:
        mine = [order[c] for c in acked if c.split("-")[0] == prefix]
        assert mine == sorted(mine)


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_restart_and_downtime_during_appends(kind: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(f"{kind}_server")
    sm = SessionManager(_url(kind, server))
    acked: list[str] = []
    failed: list[str] = []

    def append(i: int) -> None:
        text = f"main-{i}"
        try:
            sm.append_messages("s", [{"role": "user", "content": text}])
        except StoreUnavailableError as exc:
            assert str(server.port) in str(exc) and "is the server running?" in str(exc)
            failed.append(text)
        else:
            acked.append(text)

    for i in range(10):
        append(i)
    server.restart()
    for i in range(10, 20):
        append(i)
    assert failed == [], "the store did not reconnect after a restart"
    server.stop()
    try:
        for i in range(20, 22):
            append(i)
        with pytest.raises(StoreUnavailableError):
            sm.load_session("s")
    finally:
        server.start()
    assert failed == ["main-20", "main-21"]
    for i in range(22, 30):
        append(i)
    assert len(acked) == 28
    _check(sm, acked, failed)
    assert sm.session_info("s").message_count == 28  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_restart_while_threads_append(kind: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(f"{kind}_server")
    url = _url(kind, server)
    sm = SessionManager(url)
    sm.create_session("s")
    acked: list[str] = []
    failed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        i = 0
        while not stop.is_set():
            text = f"t{w}-{i}"
            try:
                sm.append_messages("s", [{"role": "user", "content": text}])
            except StoreUnavailableError:
                with lock:
                    failed.append(text)
            else:
                with lock:
                    acked.append(text)
            i += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    server.restart()
    time.sleep(0.6)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    with lock:
        before = len(acked)
    assert before > 10
    after_restart = [c for c in acked if int(c.split("-")[1]) > 0]
    assert after_restart
    # still usable, and from a fresh store instance too
    sm.append_messages("s", [{"role": "user", "content": "final-0"}])
    acked.append("final-0")
    _check(sm, acked, failed)
    from scratchy.stores import store_for_url

    fresh = store_for_url(url)
    try:
        stored = fresh.load("s")
        assert stored is not None
        assert stored.messages[-1]["content"] == "final-0"
    finally:
        fresh.close()  # type: ignore[attr-defined]

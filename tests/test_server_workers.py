"""Many workers, one truth: concurrent clients on shared sessions, and a worker killed mid-turn.

20 clients x 10 turns over 5 sessions against 4 uvicorn workers, on the TOON file store and on
PostgreSQL: every turn is stored exactly once, no session's turns interleave, and the 409s the
clients got (and retried) are counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.server_helpers import start_server  # noqa: F401 - fixture

CLIENTS, TURNS, SESSIONS = 20, 10, 5


def hammer(url: str, headers: dict[str, str]) -> Counter[str]:
    """Run CLIENTS x TURNS turns; each client retries a 409 until its turn is accepted."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            for t in range(TURNS):
                sid = f"conc_{(n + t) % SESSIONS}"
                text = f"client {n} turn {t}"
                while True:
                    answer = c.post(f"/v1/sessions/{sid}/turns", json={"input": text})
                    with lock:
                        counts[str(answer.status_code)] += 1
                    if answer.status_code == 409:
                        assert answer.json()["error"]["code"] == "session_busy"
                        time.sleep(0.02)
                        continue
                    if answer.status_code != 200 or answer.json()["reply"] != f"You said: {text}":
                        errors.append(f"{sid} {text}: {answer.status_code} {answer.text[:200]}")
                    break

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:5]
    return counts


def check_sessions(url: str, headers: dict[str, str]) -> None:
    """Every turn stored once, each as user then its own reply, never interleaved."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        for s in range(SESSIONS):
            items = c.get(f"/v1/sessions/conc_{s}/messages", params={"limit": 1000}).json()["items"]
            body = [m for m in items if m["role"] != "system"]
            assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2)
            for user, reply in zip(body[::2], body[1::2], strict=True):
                assert reply["content"] == f"You said: {user['content']}"
                seen[user["content"]] += 1
    expected = {f"client {n} turn {t}" for n in range(CLIENTS) for t in range(TURNS)}
    assert set(seen) == expected and set(seen.values()) == {1}


@pytest.mark.parametrize("backend", ["files", "postgres"])
def test_concurrent_clients_on_shared_sessions(
    start_server,  # noqa: F811
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    args = ["--agent", "tests.server_agents:slow"]
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        args += ["--store", f"{url}?schema=srv_{uuid.uuid4().hex[:8]}"]
    proc = start_server(*args, workers=4, env={"SCRATCHY_TEST_DELAY": "0.002"})
    headers = {"Authorization": "Bearer key-alice-0123456789"}
    started = time.monotonic()
    counts = hammer(proc.url, headers)
    elapsed = time.monotonic() - started
    check_sessions(proc.url, headers)
    print(f"\n{backend}: {CLIENTS * TURNS} turns in {elapsed:.1f} s, answers {dict(counts)}")
    assert counts["200"] == CLIENTS * TURNS
    assert counts["409"] > 0  # the sessions really were contended


def _kill_mid_turn(start_server, tmp_path: Path) -> httpx.Client:  # noqa: F811
    """Start a turn, SIGKILL the worker running it; a client for the server."""
    pid_file = tmp_path / "worker.pid"
    proc = start_server(
        "--agent", "tests.server_agents:hanging", workers=2,
        env={"SCRATCHY_TEST_PID_FILE": str(pid_file)},
    )  # fmt: skip
    headers = {"Authorization": "Bearer key-alice-0123456789"}

    def doomed() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the worker dies under it
            httpx.post(f"{proc.url}/v1/sessions/killed/turns", json={"input": "hang, keep me"},
                       headers=headers, timeout=60)  # fmt: skip

    thread = threading.Thread(target=doomed, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    assert worker != proc.proc.pid
    os.kill(worker, signal.SIGKILL)
    thread.join(timeout=20)
    return httpx.Client(base_url=proc.url, headers=headers, timeout=10)


def test_worker_killed_mid_turn_leaves_the_session_usable(start_server, tmp_path: Path) -> None:  # noqa: F811
    with _kill_mid_turn(start_server, tmp_path) as c:
        # not left locked: the next turn runs at once, on a surviving worker
        nxt = c.post("/v1/sessions/killed/turns", json={"input": "again"})
        assert nxt.status_code == 200, nxt.text
        assert nxt.json()["reply"] == "done"
        items = c.get("/v1/sessions/killed/messages").json()["items"]
    calls = {tc["id"] for m in items for tc in m.get("tool_calls") or []}
    answered = {m.get("tool_call_id") for m in items if m["role"] == "tool"}
    assert calls <= answered  # no dangling tool call
    assert [m["content"] for m in items][-2:] == ["again", "done"]


def test_worker_killed_mid_turn_keeps_the_users_input(start_server, tmp_path: Path) -> None:  # noqa: F811
    with _kill_mid_turn(start_server, tmp_path) as c:
        answer = c.get("/v1/sessions/killed/messages")
    assert answer.status_code == 200
    assert "hang, keep me" in [m["content"] for m in answer.json()["items"]]


def test_metric_files_of_a_killed_supervisor_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import tempfile

    from scratchy.server.metrics import fresh_multiproc_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid names a directory no process owns any more
    stale = tmp_path / f"scratchy-metrics-{gone.pid}-abc123"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"x")
    live = tmp_path / f"scratchy-metrics-{os.getppid()}-def456"  # a running supervisor's
    live.mkdir()
    other = tmp_path / "scratchy-metrics-notes"
    other.mkdir()
    made = Path(fresh_multiproc_dir())
    assert made.parent == tmp_path and made.name.startswith(f"scratchy-metrics-{os.getpid()}-")
    assert list(made.iterdir()) == []
    assert not stale.exists() and live.exists() and other.exists()

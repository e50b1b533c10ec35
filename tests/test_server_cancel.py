"""``POST /v1/sessions/{id}/turns/cancel``: stopping a running turn from any worker or machine.

Against real ``scratchy serve`` processes: the cancel reaches a turn of the same worker, of
another worker (``--workers 2``) and of another server on the same store (TOON files,
PostgreSQL, Redis: as another machine would), and the session is left valid: the input kept,
every tool call answered, the unfinished reply dropped, the next turn normal.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server_helpers import auth, start_server  # noqa: F401 - fixture

LONG = "x" * 400  # echoed one character every 0.05 s: a 20-second reply


class StreamedTurn:
    """A streamed turn read in a thread: its events as they come."""

    def __init__(self, url: str, sid: str, text: str, owner: str = "alice") -> None:
        self.events: list[tuple[str, Any]] = []
        self.status = 0
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, sid, text, owner))
        self.thread.start()

    def _run(self, url: str, sid: str, text: str, owner: str) -> None:
        body = {"input": text, "stream": True}
        with httpx.stream("POST", f"{url}/v1/sessions/{sid}/turns", json=body,
                          headers=auth(owner), timeout=60) as answer:  # fmt: skip
            self.status = answer.status_code
            kind = None
            for line in answer.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.append((kind, json.loads(line[5:])))
                    if kind in ("delta", "tool_call"):
                        self.started.set()
        self.started.set()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the stream did not end"


def assert_valid(items: list[dict[str, Any]], text: str) -> None:
    """The input is kept, every tool call has a result, no unfinished reply was stored."""
    calls = {c["id"] for m in items for c in m.get("tool_calls") or []}
    answered = {m.get("tool_call_id") for m in items if m["role"] == "tool"}
    assert calls <= answered, "a dangling tool call"
    users = [i for i, m in enumerate(items) if m["role"] == "user"]
    last = users[-1]
    assert items[last]["content"] == text
    assert not any(m["role"] == "assistant" and not m.get("tool_calls") for m in items[last:])


def cancel_and_check(url_turn: str, url_cancel: str, sid: str, text: str) -> dict[str, Any]:
    """Start a turn on one server, cancel it through another; check what is left."""
    turn = StreamedTurn(url_turn, sid, text)
    assert turn.started.wait(20), turn.events
    with httpx.Client(base_url=url_cancel, headers=auth("alice"), timeout=30) as c:
        answer = c.post(f"/v1/sessions/{sid}/turns/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        turn.join()
        assert turn.kinds()[-2:] == ["error", "done"], turn.kinds()
        assert turn.events[-2][1]["error"]["code"] == "turn_cancelled"
        assert "final" not in turn.kinds()
        items = c.get(f"/v1/sessions/{sid}/messages").json()["items"]
        assert_valid(items, text)
        after = c.post(f"/v1/sessions/{sid}/turns", json={"input": "next"})  # usable at once
        assert after.status_code == 200 and after.json()["reply"] == "You said: next", after.text
        assert c.post(f"/v1/sessions/{sid}/turns/cancel").status_code == 409
    return answer.json()


def test_cancel_a_streamed_reply_in_the_same_worker(start_server) -> None:  # noqa: F811
    proc = start_server("--agent", "tests.server_agents:cancellable", workers=1)
    started = time.monotonic()
    answer = cancel_and_check(proc.url, proc.url, "s1", LONG)
    assert answer["turn_id"].startswith("turn_")  # this worker ran it
    assert time.monotonic() - started < 15  # long before the 20-second reply would end


def test_cancel_a_running_tool_and_a_json_turn(start_server) -> None:  # noqa: F811
    proc = start_server("--agent", "tests.server_agents:cancellable", workers=1)
    cancel_and_check(proc.url, proc.url, "tool", "please wait")
    with proc.client() as c:
        items = c.get("/v1/sessions/tool/messages").json()["items"]
        closed = [m for m in items if m["role"] == "tool"]
        assert closed and "cancelled" in closed[0]["content"]
        # the turn's own JSON request answers 409 turn_cancelled
        answers: list[httpx.Response] = []
        body = {"input": "please wait", "if_busy": "wait"}
        runner = threading.Thread(  # a client of its own: httpx clients are not shared
            target=lambda: answers.append(
                httpx.post(
                    f"{proc.url}/v1/sessions/json/turns", json=body, headers=auth("alice"),
                    timeout=90,
                )
            )
        )  # fmt: skip
        runner.start()
        seen: list[int] = []  # 404 until the turn stores its input; 409 while it starts
        deadline = time.monotonic() + 60  # generous: a loaded CI machine starts turns slowly
        while time.monotonic() < deadline:
            got = c.post("/v1/sessions/json/turns/cancel")
            seen.append(got.status_code)
            if got.status_code == 200:
                break
            time.sleep(0.05)
        assert seen[-1] == 200, sorted(set(seen))
        runner.join(timeout=90)
        assert answers, "the cancelled turn's own request did not end"
        assert answers[0].status_code == 409, answers[0].text
        assert answers[0].json()["error"]["code"] == "turn_cancelled"
        metrics = c.get("/metrics").text
        assert 'outcome="cancelled"' in metrics


def test_cancel_answers_404_and_409_and_is_owner_scoped(start_server) -> None:  # noqa: F811
    proc = start_server("--agent", "tests.server_agents:cancellable", workers=1)
    with proc.client("alice") as alice, proc.client("bob") as bob:
        missing = alice.post("/v1/sessions/nope/turns/cancel")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
        assert alice.post("/v1/sessions/..%2Fx/turns/cancel").status_code == 400
        assert alice.post("/v1/sessions/idle/turns", json={"input": "hi"}).status_code == 200
        idle = alice.post("/v1/sessions/idle/turns/cancel")
        assert idle.status_code == 409 and idle.json()["error"]["code"] == "no_turn_running"
        assert alice.post("/v1/sessions/idle/turns/cancel?wait=-1").status_code == 422
        turn = StreamedTurn(proc.url, "mine", LONG)
        assert turn.started.wait(20)
        other = bob.post("/v1/sessions/mine/turns/cancel")  # bob's "mine" is another session
        assert other.status_code == 404, other.text
        time.sleep(0.3)
        assert turn.thread.is_alive()  # alice's turn runs on
        assert alice.post("/v1/sessions/mine/turns/cancel").status_code == 200
        turn.join()


def test_cancel_reaches_the_other_worker(start_server) -> None:  # noqa: F811
    """Two workers: each cancel goes out on a new connection, to whichever worker takes it."""
    proc = start_server("--agent", "tests.server_agents:cancellable", workers=2)
    remote = 0
    for i in range(4):
        answer = cancel_and_check(proc.url, proc.url, f"w{i}", LONG)
        remote += answer["turn_id"] is None  # answered by the worker that does not run it
    print(f"\n{remote} of 4 cancels went through the other worker")


@pytest.mark.parametrize("backend", ["files", "postgres", "redis"])
def test_cancel_reaches_another_server_on_the_same_store(
    start_server,  # noqa: F811
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Two ``scratchy serve`` processes on one store (as on two machines): a turn on the first
    is cancelled through the second."""
    if backend == "files":
        store = str(tmp_path / "shared")
    elif backend == "postgres":
        store = f"{request.getfixturevalue('postgres_url')}?schema=cx_{uuid.uuid4().hex[:8]}"
    else:
        store = f"{request.getfixturevalue('redis_url')}?prefix=cx{uuid.uuid4().hex[:8]}:"
    first = start_server("--agent", "tests.server_agents:cancellable", "--store", store, workers=1)
    second = start_server("--agent", "tests.server_agents:cancellable", "--store", store, workers=1)
    answer = cancel_and_check(first.url, second.url, "far", LONG)
    assert answer["turn_id"] is None  # the second server does not run it
    answer = cancel_and_check(first.url, second.url, "far_tool", "please wait")

"""``scratchy serve`` over real HTTP: the sessions REST API, turns (JSON and SSE), keys and
owners, errors, busy sessions, idempotent retries and disconnects.

Every test talks to a real server process (uvicorn, two workers) on 127.0.0.1 through httpx.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_helpers import ROOT, ServerProc, auth, start_server  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One echo server (``fake:``) with three owners, shared by the tests of this module."""
    proc = ServerProc(tmp_path_factory.mktemp("serve"), "--model", "fake:", workers=2)
    yield proc
    proc.close()


def sse(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a Server-Sent Events body."""
    events = []
    for frame in text.strip().split("\n\n"):
        name, data = "", ""
        for line in frame.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        events.append((name, json.loads(data)))
    return events


# --- start-up and operations ---------------------------------------------------------------------


def test_start_up_line_health_and_openapi(server: ServerProc) -> None:
    first = server.log().splitlines()[0]
    assert first.startswith(f"Scratchy serving http://127.0.0.1:{server.port} · store ")
    assert "2 workers" in first and "3 owners" in first
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/sessions", "/v1/sessions/{session_id}/turns", "/v1/chat/completions"):
        assert path in spec["paths"]
    cancel = spec["paths"]["/v1/sessions/{session_id}/turns/cancel"]["post"]
    assert {"200", "202", "404", "409"} <= set(cancel["responses"])
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_metrics_count_requests_by_route(server: ServerProc) -> None:
    """Any worker's /metrics shows the whole server: requests answered by either worker."""
    get_session = (("method", "GET"), ("route", "/v1/sessions/{session_id}"), ("status", "200"))

    def count() -> float:
        text = httpx.get(f"{server.url}/metrics").text  # a new connection: either worker
        return _samples(text, "scratchy_requests_total").get(get_session, 0.0)

    with server.client() as c:
        c.post("/v1/sessions/metrics_probe/turns", json={"input": "count me"})
    before = count()
    for _ in range(6):  # new connections, spread over both workers
        with server.client() as c:
            assert c.get("/v1/sessions/metrics_probe").status_code == 200
    assert [count() for _ in range(4)] == [before + 6] * 4
    text = httpx.get(f"{server.url}/metrics").text
    assert "# TYPE scratchy_requests_total counter" in text
    turns = (("method", "POST"), ("route", "/v1/sessions/{session_id}/turns"), ("status", "200"))
    assert _samples(text, "scratchy_requests_total")[turns] >= 1
    assert _samples(text, "scratchy_turns_total")[(("outcome", "ok"),)] >= 1
    assert _samples(text, "scratchy_turn_seconds_count")[()] >= 1
    assert _samples(text, "scratchy_active_streams")[()] == 0
    assert "_created" not in text


# --- sessions --------------------------------------------------------------------------------


def test_create_read_patch_list_delete_restore(server: ServerProc) -> None:
    with server.client() as c:
        made = c.post(
            "/v1/sessions", json={"id": "crud_one", "title": "First", "metadata": {"a": 1}}
        )
        assert made.status_code == 201, made.text
        assert made.json()["id"] == "crud_one" and made.json()["title"] == "First"
        assert made.json()["metadata"] == {"a": 1} and made.json()["message_count"] == 0
        again = c.post("/v1/sessions", json={"id": "crud_one"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "session_exists"
        generated = c.post("/v1/sessions", json={})
        assert generated.status_code == 201 and generated.json()["id"].startswith("s_")

        patched = c.patch("/v1/sessions/crud_one", json={"title": "Renamed", "metadata": {"b": 2}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["title"] == "Renamed"
        assert patched.json()["metadata"] == {"a": 1, "b": 2}
        removed = c.patch("/v1/sessions/crud_one", json={"metadata": {"a": None}})
        assert removed.json()["metadata"] == {"b": 2}
        got = c.get("/v1/sessions/crud_one").json()
        assert set(got) == {"id", "title", "created_at", "updated_at", "message_count", "usage",
                            "cost", "metadata"}  # fmt: skip
        assert got["usage"] == {"input_tokens": 0, "output_tokens": 0}
        assert (got["cost"]["usd"], got["cost"]["status"]) == ("0", "complete")

        assert c.delete("/v1/sessions/crud_one").status_code == 204
        assert c.get("/v1/sessions/crud_one").status_code == 404
        assert c.delete("/v1/sessions/crud_one").status_code == 404
        restored = c.post("/v1/sessions/crud_one/restore")
        assert restored.status_code == 200 and restored.json()["id"] == "crud_one"
        assert c.post("/v1/sessions/crud_one/restore").status_code == 404  # the trash is empty
        assert c.delete("/v1/sessions/crud_one").status_code == 204
        assert c.post("/v1/sessions", json={"id": "crud_one"}).status_code == 201
        assert c.post("/v1/sessions/crud_one/restore").status_code == 409  # a live one has the id
        assert c.post("/v1/sessions/never_was/restore").status_code == 404


def test_listing_is_keyset_paginated_newest_first(server: ServerProc) -> None:
    with server.client("bob") as c:
        for n in range(5):
            assert (
                c.post(f"/v1/sessions/page_{n}/turns", json={"input": f"hi {n}"}).status_code == 200
            )
            time.sleep(0.01)
        seen, cursor = [], None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = c.get("/v1/sessions", params=params).json()
            assert len(page["items"]) <= 2
            seen += [s["id"] for s in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        pages = [s for s in seen if s.startswith("page_")]
        assert pages == [f"page_{n}" for n in reversed(range(5))]
        assert len(seen) == len(set(seen))
        bad = c.get("/v1/sessions", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
        found = c.get("/v1/sessions", params={"q": "hi 3"}).json()["items"]
        assert [s["id"] for s in found][:1] == ["page_3"]


def test_messages_tail_of_a_long_session_stays_current(server: ServerProc) -> None:
    """``tail`` pages the end; workers keep long sessions in memory, checked on every read."""
    from scratchy.sessions import open_store

    store = open_store(server.log_path.parent / "sessions").scoped("alice")
    store.append("long", [{"role": "user", "content": f"m{i}"} for i in range(300)])
    with server.client() as c, server.client("bob") as bob:
        for _ in range(3):  # both workers, each read twice (the second from memory)
            page = c.get("/v1/sessions/long/messages", params={"tail": 5}).json()
            assert (page["offset"], page["total"]) == (295, 300)
            assert [m["content"] for m in page["items"]] == ["m295", "m296", "m297", "m298", "m299"]
        assert c.post("/v1/sessions/long/turns", json={"input": "new"}).status_code == 200
        for _ in range(3):
            page = c.get("/v1/sessions/long/messages", params={"tail": 2}).json()
            assert [m["content"] for m in page["items"]] == ["new", "You said: new"]
        store.replace("long", [{"role": "user", "content": f"r{i}"} for i in range(250)])
        for _ in range(3):
            page = c.get("/v1/sessions/long/messages", params={"offset": 248}).json()
            assert page["total"] == 250
            assert [m["content"] for m in page["items"]] == ["r248", "r249"]
        assert bob.get("/v1/sessions/long/messages", params={"tail": 5}).status_code == 404
        store.delete("long")
        assert c.get("/v1/sessions/long/messages", params={"tail": 5}).status_code == 404
        assert c.get("/v1/sessions/x/messages", params={"tail": 0}).status_code == 422


def test_messages_export_fork_and_search(server: ServerProc) -> None:
    with server.client() as c:
        for text in ("alpha question", "beta question", "gamma question"):
            assert c.post("/v1/sessions/msgs/turns", json={"input": text}).status_code == 200
        page = c.get("/v1/sessions/msgs/messages", params={"offset": 1, "limit": 2}).json()
        assert page["total"] == 7  # the system prompt, then three user/assistant pairs
        assert [m["content"] for m in page["items"]] == [
            "alpha question",
            "You said: alpha question",
        ]
        exported = c.get("/v1/sessions/msgs/export", params={"format": "json"})
        assert exported.headers["content-type"].startswith("application/json")
        assert len(exported.json()) == 7
        markdown = c.get("/v1/sessions/msgs/export", params={"format": "md"})
        assert "**User:**" in markdown.text and "beta question" in markdown.text
        toon = c.get("/v1/sessions/msgs/export", params={"format": "toon"})
        assert "session_id: msgs" in toon.text
        assert c.get("/v1/sessions/msgs/export", params={"format": "pdf"}).status_code == 422

        fork = c.post("/v1/sessions/msgs/fork", json={"new_id": "msgs_fork", "at": 3})
        assert fork.status_code == 201 and fork.json()["message_count"] == 3
        assert c.post("/v1/sessions/msgs/fork", json={"new_id": "msgs_fork"}).status_code == 409
        assert c.post("/v1/sessions/nothing/fork", json={}).status_code == 404

        hits = c.get("/v1/search", params={"q": "gamma"}).json()["hits"]
        assert hits and hits[0]["session_id"] == "msgs" and "[gamma]" in hits[0]["snippet"].lower()


# --- turns ---------------------------------------------------------------------------------------


def test_turn_json_and_sse(server: ServerProc) -> None:
    with server.client() as c:
        first = c.post("/v1/sessions/turns_a/turns", json={"input": "hello there"})
        assert first.status_code == 200
        body = first.json()
        assert body["reply"] == "You said: hello there" and body["session_id"] == "turns_a"
        assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
        assert body["usage"]["output_tokens"] > 0

        streamed = c.post("/v1/sessions/turns_a/turns", json={"input": "stream it", "stream": True})
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = sse(streamed.text)
        names = [n for n, _ in events]
        assert names[-2:] == ["final", "done"] and set(names[:-2]) == {"delta"}
        assert "".join(d["text"] for n, d in events if n == "delta") == "You said: stream it"
        assert events[-2][1]["reply"] == "You said: stream it"

        accept = c.post(
            "/v1/sessions/turns_a/turns",
            json={"input": "by header"},
            headers={"Accept": "text/event-stream"},
        )
        assert sse(accept.text)[-2][1]["reply"] == "You said: by header"
        assert c.get("/v1/sessions/turns_a").json()["message_count"] == 7


def test_tool_events_and_server_approval(start_server) -> None:  # noqa: F811
    plain = start_server("--agent", "tests.server_agents:tools", workers=1)
    with plain.client() as c:
        events = sse(c.post("/v1/sessions/t/turns", json={"input": "add", "stream": True}).text)
        names = [n for n, _ in events]
        assert names[:3] == ["tool_call", "tool_start", "tool_result"]
        assert set(names[3:-2]) == {"delta"} and names[-2:] == ["final", "done"]
        assert events[0][1]["name"] == "add" and json.loads(events[0][1]["arguments"]) == {
            "a": 2,
            "b": 3,
        }
        assert events[1][1] == {"id": events[0][1]["id"], "name": "add", "args": {"a": 2, "b": 3}}
        assert events[2][1] == {"id": events[0][1]["id"], "name": "add", "content": "5",
                                "is_error": False}  # fmt: skip
        assert events[-2][1]["reply"] == "The tool said: 5"
        refused = sse(c.post("/v1/sessions/t/turns", json={"input": "write a note",
                                                           "stream": True}).text)  # fmt: skip
        event = next(d for n, d in refused if n == "tool_result")
        assert event["is_error"] is True
        assert event["content"].startswith(
            "Error: this server does not allow 'write_note' to run: it needs approval"
        )
        assert "--allow-tool write_note" in event["content"]
        stored = c.get("/v1/sessions/t/messages").json()["items"]
        assert [m["content"] for m in stored if m["role"] == "tool"][-1] == event["content"]
        assert not (plain.log_path.parent / "notes.txt").exists()
    allowed = start_server("--agent", "tests.server_agents:tools", "--allow-tool", "write_note",
                           workers=1)  # fmt: skip
    with allowed.client() as c:
        ran = c.post("/v1/sessions/t2/turns", json={"input": "write a note"}).json()
        assert ran["reply"] == "The tool said: written"


def test_provider_failure_is_502_with_its_message(start_server) -> None:  # noqa: F811
    proc = start_server("--agent", "tests.server_agents:failing", workers=1)
    with proc.client() as c:
        failed = c.post("/v1/sessions/f/turns", json={"input": "hi"})
        assert failed.status_code == 502
        assert failed.json()["error"] == {
            "code": "provider_error",
            "message": "upstream model said no (HTTP 500)",
        }
        streamed = sse(c.post("/v1/sessions/f/turns", json={"input": "hi", "stream": True}).text)
        assert streamed[-2] == ("error", failed.json()) and streamed[-1][0] == "done"
        # the user's input is kept, with no reply
        assert c.get("/v1/sessions/f").json()["message_count"] == 2


# --- owners and keys -----------------------------------------------------------------------------


def test_owners_are_isolated_on_every_route(server: ServerProc) -> None:
    with server.client("alice") as alice, server.client("bob") as bob:
        assert (
            alice.post("/v1/sessions/shared_name/turns", json={"input": "alice secret"}).status_code
            == 200
        )
        for method, path, body in [
            ("GET", "/v1/sessions/shared_name", None),
            ("GET", "/v1/sessions/shared_name/messages", None),
            ("GET", "/v1/sessions/shared_name/export", None),
            ("PATCH", "/v1/sessions/shared_name", {"title": "mine"}),
            ("DELETE", "/v1/sessions/shared_name", None),
            ("POST", "/v1/sessions/shared_name/fork", {"new_id": "stolen"}),
            ("POST", "/v1/sessions/shared_name/restore", None),
        ]:
            answer = bob.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "session_not_found"
        missing = bob.get("/v1/sessions/no_such_session")
        assert missing.json()["error"]["message"].replace("no_such_session", "X") == bob.get(
            "/v1/sessions/shared_name"
        ).json()["error"]["message"].replace("shared_name", "X")
        assert "shared_name" not in [s["id"] for s in bob.get("/v1/sessions").json()["items"]]
        assert bob.get("/v1/search", params={"q": "secret"}).json()["hits"] == []
        assert bob.get("/v1/sessions", params={"q": "secret"}).json()["items"] == []
        # the same id under bob is bob's own session
        mine = bob.post("/v1/sessions/shared_name/turns", json={"input": "bob here"}).json()
        assert [m["content"] for m in mine["messages"]] == ["bob here", "You said: bob here"]
        history = alice.get("/v1/sessions/shared_name/messages").json()["items"]
        assert [m["content"] for m in history][1:] == ["alice secret", "You said: alice secret"]
    with server.client("root") as admin:  # an admin acts for any owner with X-Owner
        for owner, text in (("alice", "alice secret"), ("bob", "bob here")):
            seen = admin.get("/v1/sessions/shared_name/messages", headers={"X-Owner": owner})
            assert seen.status_code == 200 and seen.json()["items"][1]["content"] == text
        assert admin.get("/v1/sessions/shared_name").status_code == 404  # not the admin's own
        bad = admin.get("/v1/sessions", headers={"X-Owner": "../x"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_owner"
    with server.client("bob") as bob:
        forbidden = bob.get("/v1/sessions/shared_name", headers={"X-Owner": "alice"})
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"


def test_keys_are_required(server: ServerProc) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        answer = httpx.get(f"{server.url}/v1/sessions", headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    assert "key-alice" not in server.log()


def test_keygen_and_keys_file(start_server, tmp_path: Path) -> None:  # noqa: F811
    out = subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", "serve", "keygen", "carol"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    lines = out.stdout.splitlines()
    key = lines[1].strip()
    entry = "\n".join(lines[lines.index("Add to the keys file (--keys-file):") + 1 :])
    assert key.startswith("sk-scr-") and 'owner = "carol"' in entry and key not in entry
    (tmp_path / "keys.toml").write_text(entry + "\n")
    proc = start_server("--model", "fake:", "--keys-file", "keys.toml", workers=1, keys=None)
    ok = httpx.post(f"{proc.url}/v1/sessions/k/turns", json={"input": "hi"},
                    headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert ok.status_code == 200
    assert httpx.get(f"{proc.url}/v1/sessions", headers=auth("alice")).status_code == 401


def test_no_keys_refuses_a_public_address(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", "serve", "--host", "0.0.0.0",
         "--model", "fake:"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "Error: refusing to serve 0.0.0.0 without API keys: set SCRATCHY_API_KEYS or "
        "--keys-file (see `scratchy serve keygen`), or pass --insecure"
    ]


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "POST",
            "/v1/sessions/x/turns",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "malformed_json",
        ),  # noqa: E501
        ("POST", "/v1/sessions/x/turns", {"content": b"plain text"}, 400, "malformed_json"),
        ("POST", "/v1/sessions/x/turns", {"json": {"text": "hi"}}, 422, "invalid_fields"),
        ("POST", "/v1/sessions/x/turns", {"json": {"input": 5}}, 422, "invalid_fields"),
        (
            "POST",
            "/v1/sessions/x/turns",
            {"json": {"input": "hi", "if_busy": "later"}},
            422,
            "invalid_fields",
        ),  # noqa: E501
        ("POST", "/v1/sessions", {"json": {"id": "../etc"}}, 400, "invalid_session_id"),
        ("GET", "/v1/sessions/..%2F..%2Fetc%2Fpasswd", {}, 400, "invalid_session_id"),
        ("GET", "/v1/sessions/..%2F..%2Fetc/messages", {}, 400, "invalid_session_id"),
        ("POST", "/v1/sessions/a%00b/turns", {"json": {"input": "hi"}}, 400, "invalid_session_id"),
        ("GET", "/v1/sessions/" + "x" * 200, {}, 400, "invalid_session_id"),
        ("GET", "/v1/sessions/.hidden", {}, 400, "invalid_session_id"),
        ("GET", "/v1/sessions/nobody_here", {}, 404, "session_not_found"),
        ("GET", "/v1/sessions", {"params": {"limit": 0}}, 422, "invalid_fields"),
        ("GET", "/v1/nothing", {}, 404, "not_found"),
        ("PUT", "/v1/sessions", {}, 405, "method_not_allowed"),
        ("POST", "/v1/chat/completions", {"json": {"messages": []}}, 422, "invalid_fields"),
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [{"role": "wizard", "content": "x"}]}},
            400,
            "invalid_message",
        ),  # noqa: E501
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [{"role": "assistant", "content": "x"}]}},
            400,
            "bad_request",
        ),  # noqa: E501
    ],
)
def test_bad_input_gets_one_json_error(
    server: ServerProc, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    with server.client() as c:
        answer = c.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and "Traceback" not in error["message"]


def test_body_over_the_limit_is_413(start_server) -> None:  # noqa: F811
    proc = start_server("--model", "fake:", "--max-body", "1000", workers=1)
    with proc.client() as c:
        big = c.post("/v1/sessions/b/turns", json={"input": "x" * 2000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"input": "'
            for _ in range(30):
                yield b"y" * 100
            yield b'"}'

        streamed = c.post("/v1/sessions/b/turns", content=chunks(),
                          headers={"content-type": "application/json"})  # fmt: skip
        assert streamed.status_code == 413
        assert c.post("/v1/sessions/b/turns", json={"input": "small"}).status_code == 200


# --- busy sessions, idempotency, disconnects -----------------------------------------------------


def _slow(start_server, workers: int = 2, delay: str = "0.02"):  # noqa: F811
    return start_server("--agent", "tests.server_agents:slow", "--busy-wait", "20",
                        workers=workers, env={"SCRATCHY_TEST_DELAY": delay})  # fmt: skip


def test_busy_session_is_409_or_waits(start_server) -> None:  # noqa: F811
    proc = _slow(start_server)
    long_text = "a long question " * 5  # ~100 characters at 0.02 s: about two seconds
    results: dict[str, list[str]] = {}
    running = threading.Event()

    def first() -> None:
        with proc.client() as c:
            body = {"input": long_text, "stream": True}
            with c.stream("POST", "/v1/sessions/busy/turns", json=body) as answer:
                lines = []
                for line in answer.iter_lines():
                    lines.append(line)
                    running.set()  # the first event came: the turn holds the session
                results["first"] = lines

    thread = threading.Thread(target=first)
    thread.start()
    assert running.wait(20)
    with proc.client() as c:
        busy = c.post("/v1/sessions/busy/turns", json={"input": "me too"})
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["code"] == "session_busy"
        assert int(busy.headers["retry-after"]) >= 1
        for method, path in (("PATCH", ""), ("DELETE", "")):
            answer = c.request(method, f"/v1/sessions/busy{path}", json={"title": "x"})
            assert answer.status_code == 409, (method, answer.text)
        waited = c.post("/v1/sessions/busy/turns", json={"input": "patient", "if_busy": "wait"})
        assert waited.status_code == 200 and waited.json()["reply"] == "You said: patient"
        thread.join()
        assert "event: final" in results["first"]
        contents = [m["content"] for m in c.get("/v1/sessions/busy/messages").json()["items"]]
    assert contents[1:] == [long_text, f"You said: {long_text}", "patient", "You said: patient"]


def test_idempotency_key_returns_the_first_result(start_server) -> None:  # noqa: F811
    proc = start_server("--model", "fake:", workers=4)
    headers = {"Idempotency-Key": "retry-123"}
    with proc.client() as c:
        answers = [
            c.post("/v1/sessions/idem/turns", json={"input": "only once"}, headers=headers)
            for _ in range(6)
        ]
        assert all(a.status_code == 200 for a in answers)
        assert len({a.json()["id"] for a in answers}) == 1
        assert [a.headers.get("idempotent-replayed") for a in answers[1:]] == ["true"] * 5
        assert answers[-1].json()["messages"] == answers[0].json()["messages"]
        body = {"input": "only once", "stream": True}
        streamed = sse(c.post("/v1/sessions/idem/turns", json=body, headers=headers).text)
        assert [n for n, _ in streamed] == ["final", "done"]
        assert streamed[0][1]["id"] == answers[0].json()["id"]
        reused = c.post("/v1/sessions/idem/turns", json={"input": "other"}, headers=headers)
        assert reused.status_code == 422
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        stored = c.get("/v1/sessions/idem/messages").json()["items"]
        assert [m["content"] for m in stored].count("only once") == 1
        assert "_server" not in c.get("/v1/sessions/idem").json()["metadata"]


def test_concurrent_retries_with_one_key_run_one_turn(start_server) -> None:  # noqa: F811
    proc = _slow(start_server, workers=4, delay="0.01")
    ids: list[str] = []

    def send() -> None:
        with proc.client() as c:
            answer = c.post("/v1/sessions/idem2/turns", json={"input": "together"},
                            headers={"Idempotency-Key": "same"})  # fmt: skip
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    with proc.client() as c:
        stored = [m["content"] for m in c.get("/v1/sessions/idem2/messages").json()["items"]]
    assert stored.count("together") == 1


def test_client_disconnect_keeps_the_turn(start_server) -> None:  # noqa: F811
    proc = _slow(start_server, workers=1, delay="0.02")
    text = "keep going after I leave " * 2
    with proc.client() as c:
        with c.stream("POST", "/v1/sessions/gone/turns", json={"input": text, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # one event, then hang up
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = c.get("/v1/sessions/gone")
            if info.status_code == 200 and info.json()["message_count"] == 3:
                break
            time.sleep(0.1)
        items = c.get("/v1/sessions/gone/messages").json()["items"]
    assert [m["content"] for m in items][1:] == [text, f"You said: {text}"]


def test_workers_never_serve_a_stale_copy(server: ServerProc) -> None:
    """Each worker keeps sessions in memory; a change made through another worker (a turn, a
    deletion, a rename) is seen on the next turn. Fresh connections land on either worker."""
    for n in range(4):
        with server.client() as c:
            assert c.post("/v1/sessions/stale/turns", json={"input": f"old {n}"}).status_code == 200
    with server.client() as c:
        assert c.delete("/v1/sessions/stale").status_code == 204
    for n in range(4):
        with server.client() as c:
            assert c.post("/v1/sessions/stale/turns", json={"input": f"new {n}"}).status_code == 200
    with server.client() as c:
        items = c.get("/v1/sessions/stale/messages").json()["items"]
    assert [m["content"] for m in items if m["role"] == "user"] == [f"new {n}" for n in range(4)]


def test_a_waiting_client_that_leaves_never_leaks_the_lock(start_server) -> None:  # noqa: F811
    proc = _slow(start_server, workers=1)
    running = threading.Event()

    def first() -> None:
        with proc.client() as c:
            body = {"input": "a long question " * 4, "stream": True}
            with c.stream("POST", "/v1/sessions/leave/turns", json=body) as answer:
                for _ in answer.iter_lines():
                    running.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert running.wait(20)
    with pytest.raises(httpx.TimeoutException), proc.client() as c:  # gives up while waiting
        c.post("/v1/sessions/leave/turns", json={"input": "waiter", "if_busy": "wait"},
               timeout=0.3)  # fmt: skip
    thread.join()
    with proc.client() as c:
        deadline = time.monotonic() + 20
        while True:  # the waiter's turn may still run after the first: then the lock is free
            answer = c.post("/v1/sessions/leave/turns", json={"input": "after"})
            if answer.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        users = [m["content"] for m in c.get("/v1/sessions/leave/messages").json()["items"]
                 if m["role"] == "user"]  # fmt: skip
    assert users[-1] == "after" and users.count("after") == 1

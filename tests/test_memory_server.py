"""``/v1/memories`` over real HTTP (``scratchy serve``, two workers), owner-scoped, and a server
agent with memory: each owner's turns see that owner's memories only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_helpers import ServerProc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    proc = ServerProc(
        tmp_path_factory.mktemp("serve_memory"),
        "--agent",
        "tests.memory_agents:remembering",
        workers=2,
    )
    yield proc
    proc.close()


def test_memories_routes_are_owner_scoped(server: ServerProc) -> None:
    with server.client("alice") as alice, server.client("bob") as bob:
        made = alice.post("/v1/memories", json={"text": "I prefer tabs", "tags": ["style"]})
        assert made.status_code == 201
        entry = made.json()
        assert entry["text"] == "I prefer tabs" and entry["tags"] == ["style"]
        again = alice.post("/v1/memories", json={"text": "i prefer TABS!"})
        assert again.status_code == 200 and again.json()["id"] == entry["id"]
        mid = entry["id"]
        assert [
            m["id"] for m in alice.get("/v1/memories", params={"q": "tabs"}).json()["items"]
        ] == [mid]
        assert alice.get(f"/v1/memories/{mid}").json()["text"] == "I prefer tabs"
        # bob sees nothing of alice's, and cannot change or delete it
        assert bob.get("/v1/memories").json() == {"items": []}
        assert bob.get("/v1/memories", params={"q": "tabs"}).json() == {"items": []}
        for response in (
            bob.get(f"/v1/memories/{mid}"),
            bob.patch(f"/v1/memories/{mid}", json={"text": "stolen"}),
            bob.delete(f"/v1/memories/{mid}"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "memory_not_found"
        edited = alice.patch(f"/v1/memories/{mid}", json={"text": "I prefer spaces"})
        assert edited.json()["history"][0]["text"] == "I prefer tabs"
        secret = alice.post("/v1/memories", json={"text": "password=hunter2"})
        assert secret.status_code == 422 and secret.json()["error"]["code"] == "secret_refused"
        assert alice.post("/v1/memories", json={"text": ""}).status_code == 400
        assert alice.delete(f"/v1/memories/{mid}").status_code == 204
        assert alice.get(f"/v1/memories/{mid}").status_code == 404
    with server.client(None) as anonymous:
        assert anonymous.get("/v1/memories").status_code == 401


def test_server_turns_use_the_owners_memories(server: ServerProc) -> None:
    with server.client("alice") as alice, server.client("bob") as bob:
        told = alice.post(
            "/v1/sessions/intro/turns", json={"input": "remember: Alice's dog is Rex"}
        )
        assert told.status_code == 200 and "Remembered" in told.json()["reply"]
        [entry] = alice.get("/v1/memories", params={"q": "dog"}).json()["items"]
        assert entry["source"] == {"session": "intro", "message": 1}
        seen = alice.post("/v1/sessions/later/turns", json={"input": "what is my dog called?"})
        assert "Alice's dog is Rex" in seen.json()["reply"]
        other = bob.post("/v1/sessions/later/turns", json={"input": "what is my dog called?"})
        assert other.json()["reply"] == "no memories"
        gone = alice.delete("/v1/memories", params={"session": "intro"})
        assert gone.json() == {"deleted": [entry["id"]]}


def test_serve_memory_on_gives_the_default_agent_memory(tmp_path: Path) -> None:
    import json

    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "remember", "arguments": '{"text": "I deploy on Fridays"}'},
        }]},
        "Noted.",
    ]))  # fmt: skip
    proc = ServerProc(tmp_path, "--model", f"fake:{script}", "--memory", "on", workers=1)
    try:
        with proc.client("alice") as alice:
            done = alice.post("/v1/sessions/plans/turns", json={"input": "I deploy on Fridays"})
            assert done.status_code == 200 and done.json()["reply"] == "Noted."
            [entry] = alice.get("/v1/memories", params={"q": "Fridays"}).json()["items"]
            assert entry["text"] == "I deploy on Fridays"
            assert entry["source"]["session"] == "plans"
    finally:
        proc.close()


def test_serve_memory_with_an_agent_of_ones_own_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.test_cli import scratchy_env

    done = subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", "serve", "--agent",
         "tests.memory_agents:remembering", "--memory", "auto"],
        capture_output=True, text=True, cwd=tmp_path, env=scratchy_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "Error: --memory applies to the default agent; with --agent, give your Agent "
        'memory=True or memory="auto"'
    ]

"""The official ``openai`` SDK, unmodified, against ``scratchy serve`` (a real uvicorn process).

Sync and async clients, streamed and not, with ``X-Session-Id`` (the server keeps the history)
and without it (stateless: nothing is stored).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.server_helpers import KEYS, ServerProc, auth


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path_factory.mktemp("serve_openai"), "--model", "fake:", workers=2)
    yield proc
    proc.close()


def client(server: ServerProc, owner: str = "alice", **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEYS[owner], **kwargs)  # type: ignore[arg-type]


def stored(server: ServerProc, session_id: str, owner: str = "alice") -> list[str]:
    answer = httpx.get(f"{server.url}/v1/sessions/{session_id}/messages", headers=auth(owner))
    if answer.status_code == 404:
        return []
    return [m["content"] for m in answer.json()["items"] if m["role"] != "system"]


def test_models(server: ServerProc) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["fake:fake-model"]


def test_sync_stateless(server: ServerProc) -> None:
    before = httpx.get(f"{server.url}/v1/sessions", headers=auth("alice")).json()["items"]
    reply = client(server).chat.completions.create(
        model="anything",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "stateless hello"},
        ],
    )
    assert reply.choices[0].message.content == "You said: stateless hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.usage is not None and reply.usage.total_tokens > 0
    after = httpx.get(f"{server.url}/v1/sessions", headers=auth("alice")).json()["items"]
    assert after == before  # nothing stored


def test_sync_with_session_keeps_history(server: ServerProc) -> None:
    c = client(server, default_headers={"X-Session-Id": "sdk_sync"})
    for text in ("one", "two"):
        reply = c.chat.completions.create(model="x", messages=[{"role": "user", "content": text}])
        assert reply.choices[0].message.content == f"You said: {text}"
    assert stored(server, "sdk_sync") == ["one", "You said: one", "two", "You said: two"]
    # the stored history is what the model sees: earlier request messages are ignored
    c.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "ignored"}, {"role": "user", "content": "three"}],
    )
    assert stored(server, "sdk_sync")[-2:] == ["three", "You said: three"]
    assert "ignored" not in stored(server, "sdk_sync")
    assert stored(server, "sdk_sync", owner="bob") == []


def test_sync_streamed_with_and_without_session(server: ServerProc) -> None:
    c = client(server)
    for headers in ({"X-Session-Id": "sdk_stream"}, {}):
        chunks = list(
            c.chat.completions.create(
                model="x",
                messages=[{"role": "user", "content": "stream this please"}],
                stream=True,
                extra_headers=headers,
            )
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "You said: stream this please"
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert len(chunks) > 3  # really streamed, in pieces
    assert stored(server, "sdk_stream") == ["stream this please", "You said: stream this please"]


async def test_async_streamed_and_not(server: ServerProc) -> None:
    c = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEYS["bob"])
    reply = await c.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "async hi"}],
        extra_headers={"X-Session-Id": "sdk_async"},
    )
    assert reply.choices[0].message.content == "You said: async hi"
    stream = await c.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "async stream"}],
        stream=True,
        extra_headers={"X-Session-Id": "sdk_async"},
    )
    text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert text == "You said: async stream"
    stateless = await c.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "nobody keeps this"}]
    )
    assert stateless.choices[0].message.content == "You said: nobody keeps this"
    stateless_stream = await c.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "nor this"}], stream=True
    )
    parts = [ch.choices[0].delta.content or "" async for ch in stateless_stream if ch.choices]
    assert "".join(parts) == "You said: nor this"
    await c.close()
    assert stored(server, "sdk_async", owner="bob") == [
        "async hi",
        "You said: async hi",
        "async stream",
        "You said: async stream",
    ]


def test_sdk_errors(server: ServerProc) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong").models.list()
    assert "API key" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as bad:
        client(server).chat.completions.create(
            model="x",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Session-Id": "../../etc"},
        )
    assert "Invalid session id" in str(bad.value)


def test_idempotency_key_on_chat_completions(server: ServerProc) -> None:
    c = client(server, default_headers={"X-Session-Id": "sdk_idem", "Idempotency-Key": "k-1"})
    first = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "once"}])
    again = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "once"}])
    assert again.id == first.id and again.choices[0].message.content == "You said: once"
    assert stored(server, "sdk_idem") == ["once", "You said: once"]

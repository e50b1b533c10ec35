"""OpenAI compatibility: ``POST /v1/chat/completions`` (streamed and not) and ``GET /v1/models``.

With ``X-Session-Id: ID`` the server keeps the history: the request's last user message is the
turn's input, the stored history is what the model sees, and the turn is saved (the earlier
messages of the request are ignored). Without it the request is stateless: the agent, tools
included, runs on the messages sent and nothing is stored. Tools run on the server; their calls
are not passed back to the client. The request's ``model`` is ignored: the server's agent
decides.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..messages import text_of, validate_messages
from .auth import Caller
from .deps import caller, runtime
from .errors import ApiError
from .runtime import Runtime, Turn, fingerprint
from .sse import encode

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatRequest(BaseModel):
    """The parts of OpenAI's chat-completions request the server uses (others are ignored)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[dict[str, Any]] = Field(..., min_length=1)
    stream: bool = False


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion_id(result: dict[str, Any] | None) -> str:
    raw = (result or {}).get("id") or uuid.uuid4().hex
    return "chatcmpl-" + str(raw).removeprefix("turn_")


@router.get("/models")
async def models(
    who: Annotated[Caller, Depends(caller)], rt: Annotated[Runtime, Depends(runtime)]
) -> dict[str, Any]:
    """The one model this server runs (its agent's)."""
    return {
        "object": "list",
        "data": [{"id": rt.model_name, "object": "model", "created": 0, "owned_by": "scratchy"}],
    }


@router.post("/chat/completions")
async def chat_completions(
    body: ChatRequest,
    who: Annotated[Caller, Depends(caller)],
    rt: Annotated[Runtime, Depends(runtime)],
    x_session_id: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """A chat completion by the server's agent (see the module docstring)."""
    messages = validate_messages(body.messages)
    last = messages[-1]
    if last.get("role") != "user" or not text_of(last).strip():
        raise ApiError(400, "bad_request", "the last message must be a user message with text")
    text = text_of(last)
    if x_session_id is not None:
        turn = await rt.start_turn(
            who,
            x_session_id,
            text,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint("turn", text),
        )
    else:
        turn = rt.start_stateless(messages[:-1], text)
    model = rt.model_name
    headers = {"Idempotent-Replayed": "true"} if turn.replayed else {}
    if x_session_id is not None:
        headers["X-Session-Id"] = x_session_id
    if body.stream:
        return StreamingResponse(
            _chunks(turn, model, rt),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    result = await turn.wait()
    return JSONResponse(
        {
            "id": _completion_id(result),
            "object": "chat.completion",
            "created": result.get("created") or int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.get("reply", "")},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(result.get("usage") or {}),
        },
        headers=headers,
    )


async def _chunks(turn: Turn, model: str, rt: Runtime) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` frames, then ``data: [DONE]``; an error is one frame
    ``{"error": {...}}`` (what OpenAI sends mid-stream)."""
    cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        frame = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
            **extra,
        }
        return encode(None, frame)

    rt.metrics.active_streams += 1
    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        streamed = False
        async for kind, data in turn.stream():
            if kind == "delta":
                streamed = True
                yield chunk({"content": data["text"]}, None)
            elif kind == "final":
                if not streamed and data.get("reply"):  # a replayed turn: the whole reply
                    yield chunk({"content": data["reply"]}, None)
                yield chunk({}, "stop", usage=_usage(data.get("usage") or {}))
            elif kind == "error":
                yield encode(None, json.loads(json.dumps(data)))
        yield encode(None, "[DONE]")
    finally:
        rt.metrics.active_streams -= 1

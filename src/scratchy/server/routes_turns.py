"""``POST /v1/sessions/{id}/turns``: one agent turn, answered as JSON or as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .auth import Caller
from .deps import caller, runtime
from .runtime import Runtime, fingerprint
from .sse import public_result, turn_events

router = APIRouter(prefix="/v1/sessions", tags=["turns"])


class TurnRequest(BaseModel):
    """The user's input for one turn."""

    model_config = ConfigDict(extra="forbid")
    input: str = Field(..., min_length=1, max_length=200_000, description="The user's message.")
    stream: bool = Field(False, description="Answer with Server-Sent Events.")
    if_busy: Literal["reject", "wait"] = Field(
        "reject", description="When the session is running a turn: 409 (reject) or wait."
    )


def wants_stream(request: Request, flag: bool) -> bool:
    """``stream: true`` in the body or ``Accept: text/event-stream``."""
    return flag or "text/event-stream" in request.headers.get("accept", "")


@router.post("/{session_id}/turns")
async def run_turn(
    session_id: str,
    body: TurnRequest,
    request: Request,
    who: Annotated[Caller, Depends(caller)],
    rt: Annotated[Runtime, Depends(runtime)],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Run one turn in the session (created when absent).

    JSON answer: ``{"id", "session_id", "reply", "messages", "usage"}`` (``messages``: the
    turn's new messages, the user's first). Streamed: ``delta``, ``tool_call``,
    ``tool_start``, ``tool_result``, ``final`` (the same object) or ``error``, then ``done``.
    """
    turn = await rt.start_turn(
        who,
        session_id,
        body.input,
        wait=body.if_busy == "wait",
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint("turn", body.input) if idempotency_key else "",
    )
    headers = {"Idempotent-Replayed": "true"} if turn.replayed else {}
    if wants_stream(request, body.stream):
        return StreamingResponse(
            turn_events(turn, rt.metrics),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await turn.wait()
    return JSONResponse(public_result(result), headers=headers)


class CancelAnswer(BaseModel):
    """What ``POST .../turns/cancel`` answers."""

    session_id: str
    status: Literal["cancelled", "cancelling"] = Field(
        description="cancelled: no turn runs in the session any more (it was cancelled, or "
        "ended as the cancel reached it); cancelling: it was told to stop and has not ended "
        "within ``wait`` seconds."
    )
    turn_id: str | None = Field(
        None, description="The cancelled turn's id, when the worker answering runs it."
    )


@router.post(
    "/{session_id}/turns/cancel",
    response_model=CancelAnswer,
    responses={
        202: {"model": CancelAnswer, "description": "Told to stop; not ended yet."},
        404: {"description": "No such session (or another owner's)."},
        409: {"description": "No turn is running in the session (``no_turn_running``)."},
    },
)
async def cancel_turn(
    session_id: str,
    who: Annotated[Caller, Depends(caller)],
    rt: Annotated[Runtime, Depends(runtime)],
    wait: Annotated[
        float, Query(ge=0, le=60, description="Seconds to wait for the turn to end (0: do not).")
    ] = 10.0,
) -> Any:
    """Cancel the turn the session is running, in whichever worker or machine runs it.

    The turn ends as Ctrl-C ends one in the REPL: the user's input stays in the session, every
    tool call gets a result (``cancelled before this tool ran`` for those that had not run),
    the unfinished reply is dropped, and the session is saved. Its own request answers 409
    ``turn_cancelled`` (streamed: an ``error`` event with that code, then ``done``).
    """
    answer = await rt.cancel_turn(who, session_id, wait=wait)
    status = 200 if answer["status"] == "cancelled" else 202
    return JSONResponse(answer, status_code=status)

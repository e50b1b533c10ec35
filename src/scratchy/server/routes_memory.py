"""``/v1/memories``: the caller's memories (list, search, add, read, edit, delete).

Owner-scoped as ``/v1/sessions`` is: a key's owner sees only their memories; another owner's
memory is a 404, the same answer as a missing one. A secret is refused with 422
``secret_refused``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ..memory import MemoryNotFoundError, MemoryStore, SecretRefusedError
from ..stores.base import validate_session_id
from .auth import Caller
from .deps import caller, runtime
from .errors import ApiError
from .runtime import Runtime

router = APIRouter(prefix="/v1/memories", tags=["memories"])
Who = Annotated[Caller, Depends(caller)]
Rt = Annotated[Runtime, Depends(runtime)]


class NewMemory(BaseModel):
    """``POST /v1/memories``."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., max_length=1000)
    tags: list[str] = Field(default_factory=list, max_length=10)


class MemoryPatch(BaseModel):
    """``PATCH /v1/memories/{id}``: a new text (the old one goes to the history) and/or tags."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, max_length=1000)
    tags: list[str] | None = Field(None, max_length=10)


def _memories(rt: Runtime, who: Caller) -> MemoryStore:
    return MemoryStore(rt.store_for(who))


def _missing(memory_id: str) -> ApiError:
    return ApiError(404, "memory_not_found", f"No memory '{memory_id}'")


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except SecretRefusedError as exc:
        raise ApiError(422, "secret_refused", str(exc)) from None
    except MemoryNotFoundError as exc:
        raise _missing(str(exc.args[0]) if exc.args else "") from None


@router.get("")
async def list_memories(
    who: Who,
    rt: Rt,
    q: Annotated[str | None, Query(max_length=500)] = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The caller's memories, most recently changed first; with ``q``, the most relevant."""
    mem = _memories(rt, who)
    if q:
        found = await _call(mem.recall, q, limit=limit)
    else:
        found = (await _call(mem.list, tag=tag))[:limit]
    return {"items": [m.as_dict() for m in found]}


@router.post("", status_code=201)
async def add_memory(body: NewMemory, who: Who, rt: Rt, response: Response) -> dict[str, Any]:
    """Remember a text (201); a restatement of a stored memory returns it (200)."""
    mem = _memories(rt, who)
    before = await _call(mem.count)
    entry = await _call(mem.remember, body.text, tags=body.tags)
    if await _call(mem.count) == before:
        response.status_code = 200
    return entry.as_dict()


@router.delete("", status_code=200)
async def forget_session_memories(
    who: Who, rt: Rt, session: Annotated[str, Query(max_length=128)]
) -> dict[str, Any]:
    """Delete every memory taken from session ``session``; returns their ids."""
    validate_session_id(session)
    ids = await _call(_memories(rt, who).forget_session, session)
    return {"deleted": ids}


@router.get("/{memory_id}")
async def get_memory(memory_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    """One memory, with its history and provenance."""
    entry = await _call(_memories(rt, who).get, memory_id)
    if entry is None:
        raise _missing(memory_id)
    return entry.as_dict()


@router.patch("/{memory_id}")
async def edit_memory(memory_id: str, body: MemoryPatch, who: Who, rt: Rt) -> dict[str, Any]:
    """Replace the text and/or tags (the old text is kept in the history)."""
    if body.text is None and body.tags is None:
        raise ApiError(400, "bad_request", "send text and/or tags to change")
    mem = _memories(rt, who)
    entry = await _call(mem.update, memory_id, body.text, tags=body.tags)
    return entry.as_dict()


@router.delete("/{memory_id}", status_code=204)
async def delete_memory(memory_id: str, who: Who, rt: Rt) -> Response:
    """Delete a memory for good."""
    if not await _call(_memories(rt, who).forget, memory_id):
        raise _missing(memory_id)
    return Response(status_code=204)

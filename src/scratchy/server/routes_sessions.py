"""``/v1/sessions``: list, create, read, rename, delete, restore, fork, export, messages."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ..errors import SessionConflictError, SessionNotFoundError
from ..export import export_text
from ..stores.base import validate_session_id
from .auth import Caller
from .deps import caller, runtime
from .errors import ApiError, not_found
from .runtime import Runtime, header, list_page, store_call

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
Who = Annotated[Caller, Depends(caller)]
Rt = Annotated[Runtime, Depends(runtime)]


class NewSession(BaseModel):
    """``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="Session id (generated when absent).")
    title: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] | None = None


class SessionPatch(BaseModel):
    """``PATCH /v1/sessions/{id}``: a new title and/or metadata keys (null deletes a key)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] | None = None


class ForkRequest(BaseModel):
    """``POST /v1/sessions/{id}/fork``."""

    model_config = ConfigDict(extra="forbid")
    new_id: str | None = None
    at: int | None = Field(None, ge=0, description="Keep the first AT messages (default all).")


@router.get("")
async def list_sessions(
    who: Who,
    rt: Rt,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The caller's sessions, newest activity first (``q``: sessions matching a search)."""
    store = rt.store_for(who)
    if q:
        hits = await store_call(store, "search", q, limit=limit * 5)
        ids = list(dict.fromkeys(h.session_id for h in hits))[:limit]
        infos = await asyncio.gather(*(store_call(store, "info", i) for i in ids))
        return {"items": [header(i) for i in infos if i is not None], "next_cursor": None}
    items, nxt = await asyncio.to_thread(list_page, store, limit, cursor)  # one thread hop
    return {"items": [header(i) for i in items], "next_cursor": nxt}


@router.post("", status_code=201)
async def create_session(body: NewSession, who: Who, rt: Rt) -> dict[str, Any]:
    """Create an empty session (409 when the id exists)."""
    sid = validate_session_id(body.id) if body.id is not None else f"s_{uuid.uuid4().hex[:16]}"
    store = rt.store_for(who)
    async with rt.session_lock(who, sid):
        if await store_call(store, "exists", sid):
            raise ApiError(409, "session_exists", f"Session '{sid}' already exists")
        info = await store_call(store, "append", sid, [], metadata=body.metadata or {})
        if body.title is not None:
            info = await store_call(store, "update_header", sid, title=body.title)
    return header(info)


@router.get("/{session_id}")
async def get_session(session_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    """The session's header."""
    return header(await rt.header(who, session_id))


@router.patch("/{session_id}")
async def patch_session(session_id: str, body: SessionPatch, who: Who, rt: Rt) -> dict[str, Any]:
    """Rename the session and/or merge metadata keys (a null value deletes the key)."""
    store = rt.store_for(who)
    async with rt.session_lock(who, session_id):
        info = await rt.header(who, session_id)
        metadata = None
        if body.metadata is not None:
            metadata = copy.deepcopy(info.metadata)
            for key, value in body.metadata.items():
                if key in ("usage", "_server"):
                    raise ApiError(422, "invalid_fields", f"metadata.{key}: reserved key")
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
        info = await store_call(
            store, "update_header", session_id, title=body.title, metadata=metadata
        )
    return header(info)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: str, who: Who, rt: Rt) -> Response:
    """Move the session to the trash (``POST .../restore`` brings it back)."""
    validate_session_id(session_id)
    async with rt.session_lock(who, session_id):
        if not await store_call(rt.store_for(who), "delete", session_id):
            raise not_found(session_id)
    return Response(status_code=204)


@router.post("/{session_id}/restore")
async def restore_session(session_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    """Bring the most recently deleted session of this id back from the trash."""
    validate_session_id(session_id)
    try:
        async with rt.session_lock(who, session_id):
            info = await store_call(rt.store_for(who), "restore", session_id)
    except SessionNotFoundError:
        raise ApiError(
            404, "session_not_found", f"No session '{session_id}' in the trash"
        ) from None
    except SessionConflictError:
        raise ApiError(
            409, "session_exists", f"Session '{session_id}' exists: delete it first"
        ) from None
    return header(info)


@router.post("/{session_id}/fork", status_code=201)
async def fork_session(
    session_id: str, who: Who, rt: Rt, body: ForkRequest | None = None
) -> dict[str, Any]:
    """Copy the session (its first ``at`` messages, or all) to ``new_id``."""
    body = body or ForkRequest()
    validate_session_id(session_id)
    new_id = validate_session_id(body.new_id) if body.new_id else f"s_{uuid.uuid4().hex[:16]}"
    try:
        info = await store_call(rt.store_for(who), "fork", session_id, new_id, at=body.at)
    except SessionNotFoundError:
        raise not_found(session_id) from None
    except SessionConflictError:
        raise ApiError(409, "session_exists", f"Session '{new_id}' already exists") from None
    return header(info)


_MEDIA = {"json": "application/json", "md": "text/markdown; charset=utf-8"}


@router.get("/{session_id}/export")
async def export_session(
    session_id: str,
    who: Who,
    rt: Rt,
    format: Literal["json", "md", "toon"] = "json",  # noqa: A002 - the query parameter
) -> Response:
    """The session as JSON (a message list), a Markdown transcript or TOON."""
    stored = await store_call(rt.store_for(who), "load", validate_session_id(session_id))
    if stored is None:
        raise not_found(session_id)
    text = export_text(stored.messages, format, session_id=session_id)
    media = _MEDIA.get(format, "text/plain; charset=utf-8")
    disposition = f'inline; filename="{session_id}.{format}"'
    return Response(text, media_type=media, headers={"Content-Disposition": disposition})


@router.get("/{session_id}/messages")
async def get_messages(
    session_id: str,
    who: Who,
    rt: Rt,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tail: Annotated[
        int | None,
        Query(ge=1, le=1000, description="The last TAIL messages (offset and limit ignored)."),
    ] = None,
) -> dict[str, Any]:
    """Messages ``offset`` to ``offset + limit`` of the session, or its last ``tail``."""
    found = await rt.read_messages(who, validate_session_id(session_id))
    if found is None:
        raise not_found(session_id)
    _, messages = found
    if tail is not None:
        offset, limit = max(0, len(messages) - tail), tail
    return {
        "session_id": session_id,
        "offset": offset,
        "limit": limit,
        "total": len(messages),
        "items": messages[offset : offset + limit],
    }

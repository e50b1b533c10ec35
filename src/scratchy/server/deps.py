"""FastAPI dependencies shared by the routes: the worker's runtime and the caller (``async``:
FastAPI would run plain functions in a worker thread)."""

from __future__ import annotations

from fastapi import Request

from .auth import _OWNER_RE, OWNER_PATTERN, Caller
from .errors import ApiError
from .runtime import Runtime


async def runtime(request: Request) -> Runtime:
    """The worker's :class:`~scratchy.server.runtime.Runtime`."""
    return request.app.state.runtime  # type: ignore[no-any-return]


async def caller(request: Request) -> Caller:
    """Who sent the request (401 without a valid ``Authorization: Bearer KEY``). An admin key
    with ``X-Owner: NAME`` acts as that owner (sees and changes that owner's sessions)."""
    found = request.app.state.runtime.keys.authenticate(request.headers.get("authorization"))
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid API key: send the header Authorization: Bearer YOUR_KEY",
            {"WWW-Authenticate": "Bearer"},
        )
    acting = request.headers.get("x-owner")
    if acting is not None:
        if not found.is_admin:
            raise ApiError(403, "forbidden", "only an admin key may act for an owner (X-Owner)")
        if not _OWNER_RE.fullmatch(acting):
            raise ApiError(400, "invalid_owner", f"X-Owner must match {OWNER_PATTERN}")
        return Caller(acting, "user")
    return found

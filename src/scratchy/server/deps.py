"""FastAPI dependencies shared by the routes: the worker's runtime and the caller (``async``:
FastAPI would run plain functions in a worker thread)."""

from __future__ import annotations

from fastapi import Request

from .auth import Caller
from .errors import ApiError
from .runtime import Runtime


async def runtime(request: Request) -> Runtime:
    """The worker's :class:`~scratchy.server.runtime.Runtime`."""
    return request.app.state.runtime  # type: ignore[no-any-return]


async def caller(request: Request) -> Caller:
    """Who sent the request (401 without a valid ``Authorization: Bearer KEY``)."""
    found = request.app.state.runtime.keys.authenticate(request.headers.get("authorization"))
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid API key: send the header Authorization: Bearer YOUR_KEY",
            {"WWW-Authenticate": "Bearer"},
        )
    return found

"""``/v1/search``, ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from .auth import Caller
from .deps import caller, runtime
from .errors import ApiError, error_for
from .runtime import Runtime, store_call

router = APIRouter()


@router.get("/v1/search", tags=["search"])
async def search(
    who: Annotated[Caller, Depends(caller)],
    rt: Annotated[Runtime, Depends(runtime)],
    q: Annotated[str, Query(min_length=1, max_length=500)],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """Messages matching ``q`` across the caller's sessions, best first."""
    hits = await store_call(rt.store_for(who), "search", q, limit=limit)
    return {
        "hits": [
            {
                "session_id": h.session_id,
                "index": h.index,
                "role": h.role,
                "snippet": h.snippet,
                "score": h.score,
            }
            for h in hits
        ]
    }


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(rt: Annotated[Runtime, Depends(runtime)]) -> dict[str, str]:
    """The store answers (503 ``store_unavailable`` when it does not, within 5 s)."""
    try:
        await asyncio.wait_for(store_call(rt.store, "exists", "readyz-probe"), 5.0)
    except TimeoutError:
        rt.metrics.store_error()
        raise ApiError(
            503, "store_unavailable", "the session store did not answer in 5 s"
        ) from None
    except Exception as exc:  # noqa: BLE001 - reported as 503 with its message
        rt.metrics.store_error()
        error = error_for(exc)
        raise ApiError(503, "store_unavailable", error.message) from None
    return {"status": "ready", "store": rt.store.location}


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
async def metrics(rt: Annotated[Runtime, Depends(runtime)]) -> PlainTextResponse:
    """Prometheus text format: requests by route and status, turns, streams, store errors."""
    return PlainTextResponse(rt.metrics.render(), media_type="text/plain; version=0.0.4")

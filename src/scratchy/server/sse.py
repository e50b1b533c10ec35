"""Server-Sent Events encoding of a turn (``POST .../turns`` with ``stream: true``).

Events, in order: ``delta`` (``{"text"}``), ``tool_call`` (``{"id", "name", "arguments"}``),
``tool_start`` (``{"id", "name", "args"}``: an allowed tool starts running), ``tool_result``
(``{"id", "name", "content", "is_error"}``), then ``final`` (the same object as
the JSON answer) or ``error`` (``{"error": {"code", "message"}}``), then ``done`` (``{}``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from .metrics import Metrics
from .runtime import Turn


def encode(event: str | None, data: Any) -> bytes:
    """One SSE frame: ``event: NAME`` (optional) and ``data: JSON`` on one line."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


async def turn_events(turn: Turn, metrics: Metrics) -> AsyncIterator[bytes]:
    """The SSE frames of a turn. When the client goes away, this generator is closed; the turn
    itself keeps running in its task and is saved."""
    metrics.active_streams += 1
    try:
        async for kind, data in turn.stream():
            yield encode(kind, public_result(data) if kind == "final" else data)
        yield encode("done", {})
    finally:
        metrics.active_streams -= 1


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of a turn."""
    return {
        "id": result.get("id"),
        "session_id": result.get("session_id"),
        "reply": result.get("reply", ""),
        "messages": result.get("messages", []),
        "usage": result.get("usage", {}),
    }

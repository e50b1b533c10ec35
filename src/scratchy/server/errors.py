"""One JSON error shape for every route: ``{"error": {"code": ..., "message": ...}}``.

:func:`error_for` maps Scratchy's exceptions to an HTTP status and a stable ``code``; handlers
raise :class:`ApiError` for everything else. No handler ever returns a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import errors as core

logger = logging.getLogger("scratchy.server")


SessionBusyError = core.SessionBusyError
"""A turn on a session that runs one elsewhere (HTTP 409 ``session_busy``)."""


class ApiError(Exception):
    """An HTTP error with a stable machine-readable ``code`` and a one-line ``message``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message}}


def not_found(session_id: str) -> ApiError:
    """The answer for a missing session and for another owner's session (the same on purpose)."""
    return ApiError(404, "session_not_found", f"No session '{session_id}'")


def error_for(exc: BaseException) -> ApiError:
    """The :class:`ApiError` for any exception (500 ``internal_error`` only for real bugs)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, SessionBusyError):
        retry = getattr(exc, "retry_after", 1.0) or 1.0
        return ApiError(
            409,
            "session_busy",
            f'{exc}; retry after {retry:g} s, or send "if_busy": "wait"',
            {"Retry-After": str(max(1, round(retry)))},
        )
    table: list[tuple[type[BaseException], int, str]] = [
        (core.InvalidSessionIdError, 400, "invalid_session_id"),
        (core.InvalidMessageError, 400, "invalid_message"),
        (core.SessionNotFoundError, 404, "session_not_found"),
        (core.SessionConflictError, 409, "session_conflict"),
        (core.SessionCorruptedError, 409, "session_corrupted"),
        (core.StoreUnavailableError, 503, "store_unavailable"),
        (core.MaxTurnsExceeded, 502, "max_iterations"),
        (core.ProviderError, 502, "provider_error"),
        (core.UsageError, 400, "bad_request"),
    ]
    for cls, status, code in table:
        if isinstance(exc, cls):
            return ApiError(status, code, str(exc) or cls.__name__)
    logger.error("internal error", exc_info=exc)
    return ApiError(500, "internal_error", f"internal error ({type(exc).__name__}); see the log")

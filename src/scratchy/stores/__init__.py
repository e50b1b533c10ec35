"""Session store backends behind one :class:`~scratchy.stores.base.SessionStore` protocol.

``TOONFileStore`` (``stores/toon_files.py``) is the default; database backends are chosen by URL
scheme through the map below and imported only when used.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import UsageError
from .base import SessionInfo, SessionStore, StoredSession, validate_session_id

__all__ = ["SessionInfo", "SessionStore", "StoredSession", "store_for_url", "validate_session_id"]

BACKENDS: dict[str, str] = {
    "sqlite": ".sqlite:SQLiteStore",
    "redis": ".redis:RedisStore",
    "rediss": ".redis:RedisStore",
    "postgresql": ".postgres:PostgresStore",
    "postgres": ".postgres:PostgresStore",
}
"""URL scheme -> ``module:Class`` of the backend serving it."""


def store_for_url(url: str) -> SessionStore:
    """Open the store a URL names (``scheme://...``)."""
    scheme = url.split("://", 1)[0].lower()
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(BACKENDS)) or "none yet"
        raise UsageError(
            f"No session store for '{scheme}://' URLs (known schemes: {known}); "
            "pass a directory path to use TOON files"
        )
    module, cls = target.split(":")
    return getattr(import_module(module, __name__), cls)(url)

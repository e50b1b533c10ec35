"""The browser app: one page over the HTTP API of ``scratchy serve`` (issue 14).

:func:`mount` adds the page (``/``, ``/s/ID``, ``/trash``), its static files (``/static/...``,
shipped in this package: vanilla JavaScript modules and CSS, no Node build, no CDN) and
``GET /v1/trash`` to the server's FastAPI app. Every page answer carries a
Content-Security-Policy that allows scripts, styles and requests from the same origin only,
so nothing a model writes can run or call out.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nothing heavy at import
    from fastapi import FastAPI

__all__ = ["mount", "CSP", "STATIC_DIR"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE = HERE / "templates" / "index.html"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
"""The page's Content-Security-Policy: no inline script, nothing from another origin."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=1)
def page_html() -> str:
    """The one HTML page (the version in the asset URLs makes new releases load fresh)."""
    from .. import __version__

    return TEMPLATE.read_text(encoding="utf-8").replace("{{version}}", __version__)


def mount(app: FastAPI) -> None:
    """Serve the browser app on ``app`` (a FastAPI app made by ``scratchy.server.create_app``)."""
    from fastapi import Depends
    from fastapi.responses import HTMLResponse

    from ..server.deps import caller, runtime
    from ..server.runtime import store_call

    async def page():  # type: ignore[no-untyped-def]  # noqa: ANN202
        return HTMLResponse(page_html(), headers=SECURITY_HEADERS)

    for path in ("/", "/s/{session_id}", "/trash", "/new"):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    # No annotations on these handlers: FastAPI resolves string annotations in this module's
    # globals, where the server's names (imported here, lazily) are not.
    async def list_trash(who=Depends(caller), rt=Depends(runtime)):  # type: ignore[no-untyped-def]  # noqa: B008
        """The caller's deleted sessions, most recently deleted first."""
        store = rt.store_for(who)
        if "trash" not in getattr(store, "capabilities", frozenset({"trash"})):
            return {"items": []}
        items = await store_call(store, "list_trash")
        return {"items": [_trashed(t) for t in items[:500]]}

    app.add_api_route("/v1/trash", list_trash, methods=["GET"], tags=["sessions"])
    app.mount("/static", _Static(directory=STATIC_DIR), name="web-static")


def _trashed(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "title": entry.title or "",
        "deleted_at": entry.deleted_at.isoformat(timespec="milliseconds"),
        "message_count": entry.message_count,
    }


def _static_class() -> type:
    from fastapi.staticfiles import StaticFiles

    class Static(StaticFiles):
        """Static files with the page's security headers."""

        async def get_response(self, path: str, scope: Any) -> Any:
            response = await super().get_response(path, scope)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers.setdefault("Cache-Control", "no-cache")
            return response

    return Static


def _Static(**kwargs: Any) -> Any:  # noqa: N802 - reads like the class it builds
    return _static_class()(**kwargs)

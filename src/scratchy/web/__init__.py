"""The browser app: one page over the HTTP API of ``scratchy serve`` (issue 14).

:func:`mount` adds the page (``/``, ``/s/ID``, ``/trash``), its static files (``/static/TAG/...``,
shipped in this package: vanilla JavaScript modules and CSS, no Node build, no CDN) and
``GET /v1/trash`` to the server's FastAPI app. Every page answer carries a
Content-Security-Policy that allows scripts, styles and requests from the same origin only,
so nothing a model writes can run or call out.
"""

from __future__ import annotations

import hashlib
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


MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


@lru_cache(maxsize=1)
def assets() -> tuple[str, dict[str, tuple[bytes, str]]]:
    """The static files (name -> bytes, media type) and a tag hashed from their contents:
    they are served under ``/static/TAG/`` and cached for good, so a new version loads fresh
    and an unchanged one costs no request at all."""
    files: dict[str, tuple[bytes, str]] = {}
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in MEDIA_TYPES:
            data = path.read_bytes()
            files[path.name] = (data, MEDIA_TYPES[path.suffix])
            digest.update(path.name.encode() + b"\0" + data)
    return digest.hexdigest()[:12], files


@lru_cache(maxsize=1)
def page_html() -> str:
    """The one HTML page, its asset URLs under the current tag."""
    tag, files = assets()
    preload = "\n".join(
        f'<link rel="modulepreload" href="/static/{tag}/{name}">'
        for name in sorted(files)
        if name.endswith(".js") and name != "app.js"
    )
    html = TEMPLATE.read_text(encoding="utf-8")
    return html.replace("{{preload}}", preload).replace("{{static}}", f"/static/{tag}")


def mount(app: FastAPI) -> None:
    """Serve the browser app on ``app`` (a FastAPI app made by ``scratchy.server.create_app``)."""
    from fastapi import Depends
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from ..server.deps import caller, runtime
    from ..server.runtime import store_call

    async def page():  # type: ignore[no-untyped-def]  # noqa: ANN202
        return HTMLResponse(page_html(), headers=SECURITY_HEADERS)

    for path in ("/", "/s/{session_id}", "/trash", "/new", "/memories"):
        app.add_api_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)

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

    async def static(tag: str, name: str):  # type: ignore[no-untyped-def]  # noqa: ANN202
        current, files = assets()
        found = files.get(name)
        if found is None:
            return JSONResponse(
                {"error": {"code": "not_found", "message": f"No file /static/{tag}/{name}"}},
                status_code=404,
            )
        cache = "public, max-age=31536000, immutable" if tag == current else "no-cache"
        headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        return Response(found[0], media_type=found[1], headers=headers)

    app.add_api_route("/static/{tag}/{name}", static, methods=["GET"], include_in_schema=False)


def _trashed(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "title": entry.title or "",
        "deleted_at": entry.deleted_at.isoformat(timespec="milliseconds"),
        "message_count": entry.message_count,
    }

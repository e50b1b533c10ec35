"""The ASGI app factory: :func:`create_app`, and :func:`app_from_environment` for workers.

The app is FastAPI (``/openapi.json``, interactive docs at ``/docs``) with three pure-ASGI
layers around it: a body-size limit (413), request metrics, and error handlers that turn every
failure into ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..agent import Agent
from ..errors import ConfigError, ScratchyError
from ..stores.base import validate_session_id
from ..tracing import TraceContextMiddleware, setup_if_asked
from .auth import ApiKey, Keyring
from .errors import ApiError, error_for
from .runtime import AgentSource, Runtime

SERVE_ENV = "SCRATCHY_SERVE_OPTIONS"
"""JSON options ``scratchy serve`` hands to its worker processes."""
DEFAULT_MAX_BODY = 1 << 20
STORE_NEEDS = ("scoped", "turn_lock", "list_page", "update_header", "fork", "aio")
STORE_THREADS = 32
"""Worker threads for store I/O per process (asyncio's default is cores + 4)."""


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="scratchy-store")
    )
    yield


def create_app(
    agent_or_factory: Agent | Callable[[], Agent] | None = None,
    *,
    store: Any = None,
    keys: Keyring | str | Mapping[str, str] | Iterable[ApiKey] | None = None,
    model: str | None = None,
    memory: bool | str = False,
    max_body: int = DEFAULT_MAX_BODY,
    allow_tools: Iterable[str] = (),
    allow_all_tools: bool = False,
    busy_wait: float = 30.0,
) -> FastAPI:
    """The Scratchy HTTP API as an ASGI app.

    Args:
        agent_or_factory: An ``Agent`` (copied for each owner: same model, tools and system
            prompt) or a zero-argument function returning a new one; None runs
            ``Agent(model=model)`` with no tools.
        store: A ``SessionStore``, a directory or a store URL (default: the agent's store, else
            ``scratchy/session_history``).
        keys: Accepted API keys (``"alice:KEY1,bob:KEY2"``, ``{"alice": "KEY1"}``, a
            ``Keyring``); None reads ``$SCRATCHY_API_KEYS``; none at all: one implicit owner.
        model: ``provider:model`` for the default agent.
        memory: The default agent's memory across sessions (``True`` or ``"auto"``, as
            ``Agent(memory=...)``); an agent you pass keeps its own.
        max_body: Largest request body in bytes (larger: 413).
        allow_tools: Names of tools that need approval and may run anyway.
        allow_all_tools: Let every tool run without approval.
        busy_wait: Longest wait, in seconds, of ``"if_busy": "wait"`` and of retried
            ``Idempotency-Key`` requests for a busy session.
    """
    from ..sessions import open_store
    from .routes_memory import router as memory_router
    from .routes_openai import router as openai_router
    from .routes_ops import router as ops_router
    from .routes_sessions import router as sessions_router
    from .routes_turns import router as turns_router

    agents = AgentSource(agent_or_factory, model, memory)
    if store is None:
        store = agents.default_store() or open_store(None)
    elif isinstance(store, (str, os.PathLike)):
        store = open_store(store)
    missing = [m for m in STORE_NEEDS if not hasattr(store, m)]
    if missing:
        raise ConfigError(
            f"the server needs a session store with {', '.join(missing)} (every built-in "
            "store has them: subclass scratchy.stores.base.BaseStore)"
        )
    runtime = Runtime(
        agents,
        store,
        Keyring.coerce(keys),
        allow_tools=tuple(allow_tools),
        allow_all_tools=allow_all_tools,
        busy_wait=busy_wait,
    )
    app = FastAPI(
        lifespan=_lifespan,
        title="Scratchy",
        version=_version(),
        summary="Named, persistent agent sessions over HTTP.",
    )
    app.state.runtime = runtime
    for router in (sessions_router, turns_router, ops_router, openai_router, memory_router):
        app.include_router(router)
    from ..web import mount as mount_web  # the browser app at / (scratchy.web)

    mount_web(app)
    _install_errors(app)
    app.add_middleware(_Metrics, runtime=runtime)
    app.add_middleware(_BodyLimit, limit=max_body)
    app.add_middleware(TraceContextMiddleware)  # traceparent -> the parent of the turn's span
    setup_if_asked()  # SCRATCHY_TRACING=1: the SDK from the first request on
    return app


def _version() -> str:
    from .. import __version__

    return __version__


# --- errors --------------------------------------------------------------------------------------


def error_response(error: ApiError) -> JSONResponse:
    """The JSON answer of an error."""
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ScratchyError)
    async def _scratchy(request: Request, exc: ScratchyError) -> JSONResponse:
        return error_response(error_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(_not_found(request))
        code = {405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        return error_response(error_for(exc))


def validation_error(errors: Any) -> ApiError:
    """400 for a body that is not JSON, else 422 naming the first wrong field."""
    errors = list(errors)
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "invalid JSON")
        return ApiError(400, "malformed_json", f"the request body is not valid JSON ({reason})")
    if not errors:
        return ApiError(422, "invalid_fields", "the request has wrong fields")
    first = errors[0]
    if tuple(first.get("loc", ())) == ("body",) and first.get("type") in (
        "model_attributes_type",
        "dict_type",
        "list_type",
    ):
        return ApiError(
            400,
            "malformed_json",
            "the request body must be a JSON object (Content-Type: application/json)",
        )
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiError(422, "invalid_fields", f"{where}: {first.get('msg', 'invalid')}{more}")


def _not_found(request: Request) -> ApiError:
    """A path under ``/v1/sessions/`` whose id is not valid is a 400, never a store lookup."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    parts = raw.decode("latin-1").split("?")[0].split("/")
    if len(parts) > 3 and parts[1:3] == ["v1", "sessions"]:
        try:
            validate_session_id(unquote(parts[3]))
        except ScratchyError as exc:
            return error_for(exc)
    return ApiError(404, "not_found", f"No route {request.method} {request.url.path}")


# --- middleware ----------------------------------------------------------------------------------


class _BodyLimit:
    """Answer 413 for request bodies over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_big = ApiError(413, "body_too_large", f"the request body is over {self.limit} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    return await error_response(too_big)(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await error_response(too_big)(scope, receive, send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Metrics:
    """Count requests by route template and status; turn any escaped error into JSON."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.metrics = runtime.metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 0

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            if status:
                raise
            status = 500
            await error_response(error_for(exc))(scope, receive, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.request(path, scope["method"], status)


# --- workers ---------------------------------------------------------------------------------


def load_agent(spec: str) -> Agent | Callable[[], Agent]:
    """The ``Agent`` or factory named ``module:attribute`` (the current directory is
    importable, as for ``python -m``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--agent {spec!r}: expected module:attribute, e.g. myapp.bot:agent")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--agent {spec!r}: cannot import {module_name} ({exc})") from None
    target = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"--agent {spec!r}: {module_name} has no {attr!r}") from None
    if not isinstance(target, Agent) and not callable(target):
        raise ConfigError(f"--agent {spec!r}: {attr} is neither an Agent nor a function")
    return target  # type: ignore[return-value]


def options_app(options: dict[str, Any]) -> FastAPI:
    """The app for ``scratchy serve``'s options (a dict, as the command builds it)."""
    agent = load_agent(options["agent"]) if options.get("agent") else None
    keys: Keyring | None = None
    if options.get("keys_file"):
        keys = Keyring.from_file(options["keys_file"])
    return create_app(
        agent,
        store=options.get("store"),
        keys=keys,
        model=options.get("model"),
        memory={"on": True, "auto": "auto"}.get(options.get("memory") or "off", False),
        max_body=int(options.get("max_body") or DEFAULT_MAX_BODY),
        allow_tools=options.get("allow_tools") or (),
        allow_all_tools=bool(options.get("allow_all_tools")),
        busy_wait=float(options.get("busy_wait", 30.0)),
    )


def app_from_environment() -> FastAPI:
    """The app of one ``scratchy serve`` worker (options in ``$SCRATCHY_SERVE_OPTIONS``)."""
    options = json.loads(os.environ.get(SERVE_ENV) or "{}")
    if options.get("cwd"):
        os.chdir(options["cwd"])
    return options_app(options)

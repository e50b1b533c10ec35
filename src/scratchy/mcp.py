"""Use the tools of MCP servers (Model Context Protocol) as Scratchy tools.

Servers are described in the common ``mcp.json`` shape::

    {"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."]},
        "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ..."}}
    }}

and used through :class:`MCPManager`::

    manager = MCPManager("mcp.json")
    try:
        tools = await manager.tools()   # starts the servers on first use
    finally:
        await manager.aclose()

Each server lives in one background asyncio task that enters the MCP SDK's context managers,
waits until it is told to stop and exits them again, because anyio cancel scopes must be left
in the task that entered them. Tool calls go through the client object from any task. Everything
must happen in one event loop.

The ``mcp`` package is optional and imported only when a server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from .errors import ConfigError, MCPServerError, MissingDependencyError, ToolError
from .tools import Tool, ToolResult, _strip_titles

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

__all__ = ["MCPConnection", "MCPManager", "MCPServerConfig", "load_mcp_config", "mcp_tool_name"]

logger = logging.getLogger("scratchy")

Transport = Literal["stdio", "http", "sse"]
_HTTP_TYPES = {"http", "streamable-http", "streamable_http", "streamablehttp"}
_MAX_PAGES = 100


@dataclass(frozen=True)
class MCPServerConfig:
    """How to reach one MCP server: a command to run (stdio) or a URL (streamable HTTP, SSE)."""

    name: str
    """The server's name in the config; tool names are prefixed with it."""
    command: str | None = None
    """The executable that runs the server over stdin/stdout."""
    args: tuple[str, ...] = ()
    """Arguments for ``command``."""
    env: dict[str, str] | None = field(default=None, compare=False)
    """Extra environment variables for ``command`` (the SDK passes only a safe base set)."""
    cwd: str | None = None
    """Working directory for ``command``."""
    url: str | None = None
    """The endpoint of a remote server."""
    headers: dict[str, str] | None = field(default=None, compare=False)
    """HTTP headers sent to ``url`` (e.g. ``Authorization``)."""
    transport: Transport = "stdio"
    """``stdio`` for a command, ``http`` (streamable HTTP, the default for a URL) or ``sse``."""


# --- configuration ------------------------------------------------------------------------------

_EXAMPLE = '{"mcpServers": {"name": {"command": "...", "args": ["..."]}}}'


def _str_map(name: str, key: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(
            f"MCP server {name!r}: field {key!r} must be an object of strings, "
            f'e.g. {{"KEY": "value"}}'
        )
    return dict(value)


def _server_config(name: Any, entry: Any, where: str, base: Path | None) -> MCPServerConfig | None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: every MCP server needs a non-empty name, got {name!r}")
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"MCP server {name!r} in {where}: must be an object with 'command' or 'url', "
            f"got {type(entry).__name__}"
        )
    if entry.get("disabled") is True:
        return None
    command, url = entry.get("command"), entry.get("url")
    if command is not None and url is not None:
        raise ConfigError(f"MCP server {name!r}: set either 'command' or 'url', not both")
    if command is None and url is None:
        raise ConfigError(
            f"MCP server {name!r}: field 'command' (a program to run) or 'url' (a remote "
            f"server) is required"
        )
    kind = str(entry.get("type") or ("stdio" if command is not None else "http")).lower()
    if command is not None:
        if kind != "stdio":
            raise ConfigError(f"MCP server {name!r}: field 'type' is {kind!r} but 'command' is set")
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"MCP server {name!r}: field 'command' must be a non-empty string")
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(
                f"MCP server {name!r}: field 'args' must be a list of strings, "
                f'e.g. ["server.py", "--verbose"]'
            )
        cwd = entry.get("cwd")
        if cwd is not None:
            if not isinstance(cwd, str) or not cwd:
                raise ConfigError(f"MCP server {name!r}: field 'cwd' must be a directory path")
            if base is not None and not Path(cwd).expanduser().is_absolute():
                cwd = str(base / cwd)
        return MCPServerConfig(
            name=name,
            command=command,
            args=tuple(args),
            env=_str_map(name, "env", entry.get("env")),
            cwd=cwd,
            transport="stdio",
        )
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"MCP server {name!r}: field 'url' must be an http:// or https:// URL")
    if kind in _HTTP_TYPES:
        transport: Transport = "http"
    elif kind == "sse":
        transport = "sse"
    else:
        raise ConfigError(
            f"MCP server {name!r}: field 'type' must be 'http' (streamable HTTP) or 'sse' for a "
            f"URL, got {kind!r}"
        )
    return MCPServerConfig(
        name=name,
        url=url,
        headers=_str_map(name, "headers", entry.get("headers")),
        transport=transport,
    )


def load_mcp_config(source: str | Path | Mapping[str, Any]) -> list[MCPServerConfig]:
    """Read MCP server definitions from an ``mcp.json`` file or an already-loaded dict.

    Servers with ``"disabled": true`` are skipped. A relative ``cwd`` in a file is taken
    relative to the file's folder.

    Args:
        source: A path to a JSON file, or a dict with an ``mcpServers`` object.

    Returns:
        One config per enabled server, in file order.

    Raises:
        ConfigError: The file is missing or not JSON, or a server entry is wrong; the message
            names the server and the field.
    """
    base: Path | None = None
    if isinstance(source, Mapping):
        data: Any = source
        where = "the MCP config"
    else:
        path = Path(source).expanduser()
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"MCP config file {path} does not exist; fix the path or create it as {_EXAMPLE}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read MCP config file {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"MCP config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}"
            ) from exc
        base = path.resolve().parent
    if not isinstance(data, Mapping) or not isinstance(data.get("mcpServers"), Mapping):
        raise ConfigError(f"{where}: expected an object with an 'mcpServers' object: {_EXAMPLE}")
    configs = []
    for name, entry in data["mcpServers"].items():
        config = _server_config(name, entry, where, base)
        if config is not None:
            configs.append(config)
    return configs


# --- names and results ----------------------------------------------------------------------------


def _sanitize(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text) or "_"


def mcp_tool_name(server: str, tool: str) -> str:
    """The Scratchy name of an MCP tool: ``server__tool``, made to fit ``^[a-zA-Z0-9_-]{1,64}$``.

    Args:
        server: The server's name in the config.
        tool: The tool's name on the server.

    Returns:
        The name; over-long names are cut and end with a short hash, so they stay unique.
    """
    name = f"{_sanitize(server)}__{_sanitize(tool)}"
    if len(name) > 64:
        digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = getattr(exc, "message", None)  # the SDK's MCPError
    if not isinstance(message, str) or not message:
        message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _content_to_text(block: Any) -> str:
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind} {block.mime_type}, {len(block.data)} base64 characters not shown]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return text if isinstance(text, str) else f"[binary resource {resource.uri}]"
    if kind == "resource_link":
        return f"[resource {block.uri}]"
    return f"[{kind} content not shown]"


def _to_tool_result(result: Any) -> ToolResult:
    """Turn an MCP ``CallToolResult`` into a ToolResult (text parts joined; isError kept)."""
    text = "\n".join(_content_to_text(block) for block in result.content or [])
    structured = getattr(result, "structured_content", None)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, default=repr)
    if result.is_error:
        text = text or "the MCP tool failed without a message"
        if not text.lower().startswith("error"):
            text = f"Error: {text}"
        return ToolResult(text, is_error=True)
    return ToolResult(text)


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("mcp", "mcp", "MCP support") from exc


# --- one server ---------------------------------------------------------------------------------


class MCPConnection:
    """A connection to one MCP server, started lazily and closed with :meth:`aclose`.

    (Named ``MCPConnection`` so it is not confused with the SDK's ``MCPServer``.)
    """

    def __init__(
        self,
        config: MCPServerConfig,
        *,
        errlog: TextIO | None = None,
        startup_timeout: float = 30.0,
        needs_approval: bool = True,
        tool_timeout: float | None = None,
    ) -> None:
        """Describe the connection; nothing starts until :meth:`start` or the first use.

        Args:
            config: Where the server is.
            errlog: Where a stdio server's stderr goes; default ``sys.stderr``.
            startup_timeout: Seconds to wait for the server to answer the handshake.
            needs_approval: The ``needs_approval`` of its tools (MCP tools may change things).
            tool_timeout: Seconds a tool call may take; None waits as long as the SDK does.
        """
        self.config = config
        self.errlog = errlog
        self.startup_timeout = startup_timeout
        self.needs_approval = needs_approval
        self.tool_timeout = tool_timeout
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._lock = asyncio.Lock()
        self._tools: list[Tool] | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """The server's name in the config."""
        return self.config.name

    @property
    def error(self) -> BaseException | None:
        """Why the server failed to start or stopped on its own, if it did."""
        return self._error

    @property
    def is_running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`aclose` (or the server's exit)."""
        return self._client is not None

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"MCPConnection({self.name!r}, {self.config.transport}, {state})"

    def _transport(self, stack: contextlib.ExitStack) -> AbstractAsyncContextManager[Any]:
        config = self.config
        if config.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            errlog = self.errlog if self.errlog is not None else sys.stderr
            try:
                errlog.fileno()
            except (AttributeError, OSError, ValueError):  # e.g. a StringIO: no file descriptor
                errlog = stack.enter_context(open(os.devnull, "w"))
            params = StdioServerParameters(
                command=config.command or "",
                args=list(config.args),
                env=config.env,
                cwd=config.cwd,
            )
            return stdio_client(params, errlog=errlog)
        if config.transport == "sse":
            from mcp.client.sse import sse_client

            return sse_client(config.url or "", headers=config.headers)
        from mcp.client.streamable_http import streamable_http_client

        try:
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = create_mcp_http_client(headers=config.headers)
        except ImportError:  # pragma: no cover - the helper moved
            import httpx2

            http = httpx2.AsyncClient(headers=config.headers, timeout=httpx2.Timeout(30, read=300))
        return _closing_http(streamable_http_client(config.url or "", http_client=http), http)

    async def _serve(self) -> None:
        """The server's lifetime: enter the SDK contexts, wait for stop, exit them (one task)."""
        from mcp import Client
        from mcp.types import Implementation

        from . import __version__

        try:
            with contextlib.ExitStack() as files:
                info = Implementation(name="scratchy", version=__version__)
                async with Client(self._transport(files), client_info=info) as client:
                    self._client = client
                    self._ready.set()
                    await self._stop.wait()
        except Exception as exc:  # reported by start(), or logged if the server dies later
            self._error = exc
            if self._ready.is_set():
                logger.warning("MCP server %r stopped: %s", self.name, _describe(exc))
        finally:
            self._client = None
            self._tools = None
            self._ready.set()

    async def start(self) -> None:
        """Start the server and connect to it; does nothing when it is running already.

        Raises:
            MissingDependencyError: The ``mcp`` package is not installed.
            MCPServerError: The server did not start or did not answer in time.
        """
        _require_mcp()
        async with self._lock:
            if self.is_running:
                return
            self._closed = False
            if self._task is not None:  # it ran and ended; start afresh
                await self._finish_task()
            self._ready = asyncio.Event()
            self._stop = asyncio.Event()
            self._error = None
            self._task = asyncio.create_task(self._serve(), name=f"mcp-server-{self.name}")
            try:
                async with asyncio.timeout(self.startup_timeout):
                    await self._ready.wait()
            except TimeoutError:
                await self._finish_task(cancel=True)
                raise MCPServerError(
                    f"MCP server {self.name!r} did not answer within {self.startup_timeout:g} s; "
                    f"check that {self._where()} starts an MCP server",
                    server=self.name,
                ) from None
            except BaseException:
                await self._finish_task(cancel=True)
                raise
            if not self.is_running:
                error = self._error
                await self._finish_task()
                raise MCPServerError(
                    f"MCP server {self.name!r} could not be started "
                    f"({_describe(error) if error else 'it exited'}); check {self._where()}",
                    server=self.name,
                ) from error

    def _where(self) -> str:
        if self.config.transport == "stdio":
            return f"its command {self.config.command!r} {list(self.config.args)!r}"
        return f"its url {self.config.url!r}"

    async def _finish_task(self, *, cancel: bool = False, timeout: float = 10.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        if cancel:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except asyncio.CancelledError:
            if not task.done():  # we were cancelled ourselves: stop the server task too
                task.cancel()
                raise

    async def aclose(self) -> None:
        """Stop the server (a stdio server's process ends); only :meth:`start` restarts it."""
        async with self._lock:
            self._closed = True
            await self._finish_task()

    async def __aenter__(self) -> MCPConnection:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def list_tools(self, *, refresh: bool = False) -> list[Tool]:
        """The server's tools as Scratchy tools named ``server__tool``; starts the server.

        Args:
            refresh: Ask the server again instead of using the list fetched before.

        Returns:
            The tools, whose ``run`` calls the server.
        """
        await self.start()
        if self._tools is not None and not refresh:
            return list(self._tools)
        client = self._client
        listed: list[Any] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        tools: list[Tool] = []
        taken: set[str] = set()
        for spec in listed:
            name = mcp_tool_name(self.name, spec.name)
            if name in taken:  # two remote names that sanitize alike
                name = mcp_tool_name(self.name, f"{spec.name}_{len(taken)}")
            taken.add(name)
            tools.append(self._make_tool(name, spec))
        self._tools = tools
        return list(tools)

    def _make_tool(self, name: str, spec: Any) -> Tool:
        remote = spec.name

        async def call(**arguments: Any) -> ToolResult:
            return await self.call_tool(remote, arguments)

        call.__name__ = name
        schema = _strip_titles(dict(spec.input_schema or {}))
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        description = (spec.description or "").strip() or f"The {remote!r} tool of {self.name}."
        annotations = getattr(spec, "annotations", None)
        read_only = bool(annotations is not None and getattr(annotations, "read_only_hint", False))
        return Tool(
            name=name,
            description=description,
            parameters=schema,
            fn=call,
            needs_approval=self.needs_approval and not read_only,  # readOnlyHint: nothing changes
            timeout=self.tool_timeout,
        )

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
        """Call a tool by its name on the server.

        Args:
            name: The tool's name on the server (not the prefixed Scratchy name).
            arguments: The arguments object.

        Returns:
            The result; ``is_error`` is True when the server reports an error.

        Raises:
            ToolError: The server is not running or refused the request (shown to the model).
        """
        if not self.is_running:
            if self._task is None and self._error is None and not self._closed:
                await self.start()  # first use
            if not self.is_running:
                if self._error is not None:
                    reason = f" ({_describe(self._error)})"
                else:
                    reason = " (it was closed)" if self._closed else ""
                raise ToolError(f"MCP server {self.name!r} is not running{reason}")
        from mcp.shared.exceptions import MCPError

        try:
            result = await self._client.call_tool(name, dict(arguments or {}))
        except MCPError as exc:
            raise ToolError(
                f"MCP server {self.name!r} refused the call to {name!r}: {exc.message}"
            ) from exc
        except Exception as exc:
            if self.is_running:
                raise
            raise ToolError(
                f"MCP server {self.name!r} stopped during the call to {name!r}: {_describe(exc)}"
            ) from exc
        return _to_tool_result(result)


@contextlib.asynccontextmanager
async def _closing_http(transport: Any, http: Any) -> Any:
    """Enter ``transport`` and close the HTTP client we created for it afterwards."""
    async with http, transport as streams:
        yield streams


# --- several servers ----------------------------------------------------------------------------


class MCPManager:
    """Several MCP servers whose tools an agent uses together.

    Example:
        >>> async with MCPManager("mcp.json") as manager:  # doctest: +SKIP
        ...     tools = await manager.tools()
    """

    def __init__(
        self,
        source: str | Path | Mapping[str, Any] | None = None,
        *,
        errlog: TextIO | None = None,
        startup_timeout: float = 30.0,
        needs_approval: bool = True,
        tool_timeout: float | None = None,
    ) -> None:
        """Create a manager, optionally with the servers of one config.

        Args:
            source: An ``mcp.json`` path or dict (see :func:`load_mcp_config`).
            errlog: Where stdio servers' stderr goes; default ``sys.stderr``.
            startup_timeout: Seconds each server has to start.
            needs_approval: The ``needs_approval`` of every MCP tool.
            tool_timeout: Seconds an MCP tool call may take.
        """
        self.errlog = errlog
        self.startup_timeout = startup_timeout
        self.needs_approval = needs_approval
        self.tool_timeout = tool_timeout
        self.failures: dict[str, Exception] = {}
        """Servers that failed to start, with the error; they are not retried by :meth:`start`."""
        self._servers: dict[str, MCPConnection] = {}
        if source is not None:
            self.add(source)

    @property
    def servers(self) -> list[MCPConnection]:
        """The connections, in the order they were added."""
        return list(self._servers.values())

    def get(self, name: str) -> MCPConnection | None:
        """The connection of the server called ``name``, or None."""
        return self._servers.get(name)

    def add(
        self,
        source: str
        | Path
        | Mapping[str, Any]
        | MCPServerConfig
        | MCPConnection
        | Iterable[MCPServerConfig],
    ) -> list[MCPConnection]:
        """Add servers from a config file or dict, a config, a list of configs or a connection.

        Args:
            source: What to add; files and dicts are read with :func:`load_mcp_config`.

        Returns:
            The new connections (not started yet).

        Raises:
            ConfigError: The config is wrong or a server name is taken already.
        """
        if isinstance(source, MCPConnection):
            items: list[MCPConnection | MCPServerConfig] = [source]
        elif isinstance(source, MCPServerConfig):
            items = [source]
        elif isinstance(source, (str, Path, Mapping)):
            items = list(load_mcp_config(source))
        else:
            items = list(source)
        prefixes = {_sanitize(name): name for name in self._servers}
        added: list[MCPConnection] = []
        for item in items:
            if isinstance(item, MCPConnection):
                connection = item
            elif isinstance(item, MCPServerConfig):
                connection = MCPConnection(
                    item,
                    errlog=self.errlog,
                    startup_timeout=self.startup_timeout,
                    needs_approval=self.needs_approval,
                    tool_timeout=self.tool_timeout,
                )
            else:
                raise ConfigError(f"cannot add {item!r} as an MCP server: pass a config or a path")
            other = prefixes.get(_sanitize(connection.name))
            if other is not None:
                same = other == connection.name
                raise ConfigError(
                    f"MCP server name {connection.name!r} is "
                    + ("used already" if same else f"too close to {other!r} (same tool prefix)")
                    + "; rename one of them in the config"
                )
            prefixes[_sanitize(connection.name)] = connection.name
            self._servers[connection.name] = connection
            added.append(connection)
        return added

    async def start(self, *, ignore_errors: bool = False) -> None:
        """Start, concurrently, every server that is not running and has not failed to start.

        A server that stopped on its own is started again; one that failed to start is not
        retried (see :attr:`failures`; call its ``start()`` to retry).

        Args:
            ignore_errors: Log failures instead of raising.

        Raises:
            MCPServerError: A server failed to start in this call (unless ``ignore_errors``).
        """
        pending = [
            s for s in self._servers.values() if not s.is_running and s.name not in self.failures
        ]
        outcomes = await asyncio.gather(*(s.start() for s in pending), return_exceptions=True)
        failed: dict[str, Exception] = {}
        for server, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # KeyboardInterrupt, CancelledError
                failed[server.name] = outcome
        self.failures.update(failed)
        if not failed:
            return
        if ignore_errors:
            for name, error in failed.items():
                logger.warning("MCP server %r is not available: %s", name, error)
            return
        if len(failed) == 1:
            raise next(iter(failed.values()))
        names = ", ".join(failed)
        details = "; ".join(str(e) for e in failed.values())
        raise MCPServerError(f"MCP servers {names} could not be started: {details}", server=names)

    async def tools(self, *, ignore_errors: bool = False, refresh: bool = False) -> list[Tool]:
        """Start the servers (on first use) and return all their tools.

        Args:
            ignore_errors: Skip servers that fail to start instead of raising.
            refresh: List the tools again instead of using the lists fetched before.

        Returns:
            The tools of every running server, named ``server__tool``.

        Raises:
            MCPServerError: A server failed to start (unless ``ignore_errors``).
        """
        await self.start(ignore_errors=ignore_errors)
        running = [s for s in self._servers.values() if s.is_running]
        lists = await asyncio.gather(*(s.list_tools(refresh=refresh) for s in running))
        return [t for tools in lists for t in tools]

    async def aclose(self) -> None:
        """Stop every server; errors while stopping are logged, not raised."""
        servers = list(self._servers.values())
        outcomes = await asyncio.gather(*(s.aclose() for s in servers), return_exceptions=True)
        for server, outcome in zip(servers, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.warning("MCP server %r did not stop cleanly: %s", server.name, outcome)

    async def __aenter__(self) -> MCPManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

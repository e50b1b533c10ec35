"""Tests for scratchy.mcp against a real MCP server (tests/mcp_servers/echo_server.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratchy.errors import ConfigError, MCPServerError, MissingDependencyError, ToolError
from scratchy.mcp import (
    MCPConnection,
    MCPManager,
    MCPServerConfig,
    load_mcp_config,
    mcp_tool_name,
)
from scratchy.tools import Tool, ToolRegistry, ToolResult

SERVER = Path(__file__).parent / "mcp_servers" / "echo_server.py"
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# --- configuration ------------------------------------------------------------------------------


def test_load_config_file_and_dict(tmp_path: Path) -> None:
    config = {
        "mcpServers": {
            "local": {"command": "python", "args": ["s.py"], "env": {"A": "1"}, "cwd": "sub"},
            "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer x"}},
            "old": {"type": "sse", "url": "http://127.0.0.1:1/sse"},
            "off": {"command": "never", "disabled": True},
        }
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    local, remote, old = load_mcp_config(path)
    assert local == MCPServerConfig(
        name="local", command="python", args=("s.py",), cwd=str(tmp_path / "sub")
    )
    assert local.env == {"A": "1"} and local.transport == "stdio"
    assert (remote.url, remote.headers, remote.transport) == (
        "https://example.com/mcp",
        {"Authorization": "Bearer x"},
        "http",
    )
    assert old.transport == "sse"
    from_dict = load_mcp_config(config)
    assert [c.name for c in from_dict] == ["local", "remote", "old"]
    assert from_dict[0].cwd == "sub"  # a dict has no folder to be relative to
    assert load_mcp_config(str(path))[1] == remote


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ({"s": "python"}, r"MCP server 's' in .*must be an object with 'command' or 'url'"),
        ({"s": {}}, r"MCP server 's': field 'command' .* or 'url' .* is required"),
        ({"s": {"command": "a", "url": "http://x"}}, r"'s': set either 'command' or 'url'"),
        ({"s": {"command": ""}}, r"'s': field 'command' must be a non-empty string"),
        ({"s": {"command": "a", "args": "x y"}}, r"'s': field 'args' must be a list of strings"),
        ({"s": {"command": "a", "args": [1]}}, r"'s': field 'args' must be a list of strings"),
        ({"s": {"command": "a", "env": {"A": 1}}}, r"'s': field 'env' must be an object of str"),
        ({"s": {"command": "a", "type": "http"}}, r"'s': field 'type' is 'http' but 'command'"),
        ({"s": {"url": "ftp://x"}}, r"'s': field 'url' must be an http:// or https:// URL"),
        ({"s": {"url": "http://x", "type": "ws"}}, r"'s': field 'type' must be 'http'"),
        ({"s": {"url": "http://x", "headers": ["a"]}}, r"'s': field 'headers' must be an object"),
        ({"": {"command": "a"}}, r"every MCP server needs a non-empty name"),
    ],
)
def test_bad_server_entries_name_server_and_field(servers: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_mcp_config({"mcpServers": servers})


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MCP config file .*missing.json does not exist"):
        load_mcp_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {\n  "a": }')
    with pytest.raises(
        ConfigError, match=r"is not valid JSON: Expecting value at line 2, column 8"
    ):
        load_mcp_config(broken)
    with pytest.raises(ConfigError, match=r"expected an object with an 'mcpServers' object"):
        load_mcp_config({"servers": {}})
    with pytest.raises(ConfigError, match=r"expected an object with an 'mcpServers' object"):
        load_mcp_config({"mcpServers": []})


def test_tool_names_are_sanitized_unique_and_short() -> None:
    assert mcp_tool_name("demo", "add") == "demo__add"
    assert mcp_tool_name("my server", "fail.hard") == "my_server__fail_hard"
    long_a = mcp_tool_name("s" * 40, "t" * 40 + "a")
    long_b = mcp_tool_name("s" * 40, "t" * 40 + "b")
    assert long_a != long_b
    for name in (long_a, long_b, mcp_tool_name("ü", "ö")):
        assert NAME_RE.match(name), name


def test_manager_rejects_duplicate_and_clashing_names() -> None:
    manager = MCPManager({"mcpServers": {"a.b": {"command": "x"}}})
    with pytest.raises(ConfigError, match=r"'a.b' is used already; rename one"):
        manager.add({"mcpServers": {"a.b": {"command": "y"}}})
    with pytest.raises(ConfigError, match=r"'a_b' is too close to 'a.b' \(same tool prefix\)"):
        manager.add(MCPServerConfig(name="a_b", command="y"))
    assert [s.name for s in manager.servers] == ["a.b"]
    assert manager.get("a.b") is manager.servers[0]
    assert manager.get("a_b") is None


# --- optional dependency ------------------------------------------------------------------------


def test_importing_scratchy_mcp_does_not_import_mcp() -> None:
    code = "import sys, scratchy.mcp; print('mcp' in sys.modules, 'mcp_types' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


async def test_missing_mcp_package_raises_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # makes `import mcp` fail
    manager = MCPManager(
        {"mcpServers": {"demo": {"command": sys.executable, "args": [str(SERVER)]}}}
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'scratchy\[mcp\]'"):
        await manager.servers[0].start()
    with pytest.raises(MissingDependencyError):
        await manager.tools()
    await manager.aclose()


# --- a real stdio server --------------------------------------------------------------------------


@pytest.fixture
def mcp_json(tmp_path: Path) -> Path:
    path = tmp_path / "mcp.json"
    config = {
        "mcpServers": {
            "demo": {"command": sys.executable, "args": [str(SERVER)]},
            "broken": {"command": str(tmp_path / "no-such-program")},
        }
    }
    path.write_text(json.dumps(config))
    return path


@pytest.mark.filterwarnings("error")
async def test_stdio_server_end_to_end(mcp_json: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    manager = MCPManager(mcp_json, tool_timeout=5)
    assert [s.is_running for s in manager.servers] == [False, False]

    # Start in one task, use from this one and close from a third: the SDK's cancel scopes
    # must not care (they live in each server's own task).
    tools = await asyncio.create_task(manager.tools(ignore_errors=True))
    assert set(manager.failures) == {"broken"}
    assert "could not be started" in str(manager.failures["broken"])
    assert manager.get("demo").is_running and not manager.get("broken").is_running
    by_name = {t.name: t for t in tools}
    assert sorted(by_name) == [
        "demo__add",
        "demo__echo",
        "demo__fail_hard",
        "demo__pid",
        "demo__slow",
    ]

    add = by_name["demo__add"]
    assert isinstance(add, Tool) and add.needs_approval is True
    # a tool the server annotates readOnlyHint changes nothing: it needs no approval
    assert by_name["demo__echo"].needs_approval is False
    assert add.description == "Add two integers."
    assert add.schema()["function"]["parameters"] == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }
    assert await add.run('{"a": 2, "b": 40}') == ToolResult("42")
    assert await by_name["demo__echo"].run({"text": "héllo ✓"}) == ToolResult("héllo ✓")

    failed = await by_name["demo__fail_hard"].run({"message": "disk full"})
    assert failed.is_error and failed.content == "Error executing tool fail.hard: disk full"

    invalid = await add.run({"a": "x", "b": 1})
    assert invalid.is_error and "validation error" in invalid.content

    bad_json = await add.run("{nope")
    assert bad_json.is_error and "not valid JSON" in bad_json.content

    slow = await asyncio.gather(*(by_name["demo__slow"].run({"seconds": 0.3}) for _ in range(3)))
    assert [r.content for r in slow] == ["done"] * 3

    # The same tools work in a registry next to local tools.
    registry = ToolRegistry(tools)
    assert (await registry.run("demo__add", '{"a": 1, "b": 1}')).content == "2"

    # A second call to tools() reuses the running server and its listing.
    again = await manager.tools(ignore_errors=True)
    assert [t.name for t in again] == [t.name for t in tools]

    pid = int((await by_name["demo__pid"].run()).content)
    assert _alive(pid)
    await asyncio.create_task(manager.aclose())
    assert not manager.get("demo").is_running
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(pid)

    after = await add.run({"a": 1, "b": 2})
    assert after.is_error
    assert after.content == "Error: MCP server 'demo' is not running (it was closed)"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "MCP server 'broken' is not available" in messages[0]

    # An explicit start() after aclose() works again.
    restarted = await manager.tools(ignore_errors=True)
    assert await restarted[0].run({"a": 1, "b": 2}) == ToolResult("3")
    await manager.aclose()


async def test_tool_timeout_and_server_stays_usable() -> None:
    config = MCPServerConfig(name="demo", command=sys.executable, args=(str(SERVER),))
    async with MCPConnection(config, tool_timeout=0.3, needs_approval=False) as server:
        tools = {t.name: t for t in await server.list_tools()}
        assert tools["demo__echo"].needs_approval is False
        timed_out = await tools["demo__slow"].run({"seconds": 5})
        assert timed_out.is_error and "timed out after 0.3 s" in timed_out.content
        assert await tools["demo__echo"].run({"text": "still here"}) == ToolResult("still here")
        direct = await server.call_tool("add", {"a": 1, "b": 2})
        assert direct == ToolResult("3")
        unknown = await server.call_tool("no_such_tool", {})
        assert unknown.is_error and "no_such_tool" in unknown.content
    assert not server.is_running


async def test_startup_failures_raise_naming_the_server(tmp_path: Path) -> None:
    manager = MCPManager(
        {"mcpServers": {"quits": {"command": sys.executable, "args": ["-c", "pass"]}}},
        errlog=io.StringIO(),  # no file descriptor: the server's stderr goes to /dev/null
    )
    with pytest.raises(MCPServerError, match=r"MCP server 'quits' could not be started") as info:
        await manager.tools()
    assert info.value.server == "quits"
    await manager.aclose()

    slow_start = MCPConnection(
        MCPServerConfig(
            name="mute", command=sys.executable, args=("-c", "import time; time.sleep(30)")
        ),
        startup_timeout=0.5,
    )
    start = time.perf_counter()
    with pytest.raises(MCPServerError, match=r"'mute' did not answer within 0.5 s"):
        await slow_start.start()
    assert time.perf_counter() - start < 6
    assert not slow_start.is_running

    both = MCPManager(
        {
            "mcpServers": {
                "a": {"command": str(tmp_path / "missing-a")},
                "b": {"command": str(tmp_path / "missing-b")},
            }
        }
    )
    with pytest.raises(MCPServerError, match=r"MCP servers a, b could not be started"):
        await both.tools()
    assert set(both.failures) == {"a", "b"}
    with pytest.raises(ToolError, match=r"MCP server 'a' is not running \(FileNotFoundError"):
        await both.get("a").call_tool("x")
    await both.aclose()


# --- a real streamable HTTP server ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the HTTP MCP server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the HTTP MCP server did not open its port within 20 s")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.filterwarnings("error")
async def test_streamable_http_server(http_server: str) -> None:
    config = {"mcpServers": {"web": {"url": http_server, "headers": {"X-Test": "yes"}}}}
    async with MCPManager(config) as manager:
        tools = {t.name: t for t in await manager.tools()}
        assert "web__add" in tools and "web__fail_hard" in tools
        assert await tools["web__add"].run({"a": 20, "b": 22}) == ToolResult("42")
        failed = await tools["web__fail_hard"].run({"message": "nope"})
        assert failed.is_error and failed.content == "Error executing tool fail.hard: nope"
    assert not manager.get("web").is_running


async def test_unreachable_http_server_fails_cleanly() -> None:
    url = f"http://127.0.0.1:{_free_port()}/mcp"
    manager = MCPManager({"mcpServers": {"gone": {"url": url}}}, startup_timeout=10)
    with pytest.raises(MCPServerError, match=r"MCP server 'gone' could not be started"):
        await manager.tools()
    await manager.aclose()


def test_connection_repr_and_defaults() -> None:
    server = MCPConnection(MCPServerConfig(name="x", url="http://h/mcp", transport="http"))
    assert repr(server) == "MCPConnection('x', http, stopped)"
    assert server.name == "x" and server.needs_approval is True
    assert os.fspath(SERVER).endswith("echo_server.py")

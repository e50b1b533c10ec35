"""Tests for scratchy.default_tools: workspace safety, files, search, processes and fetch."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scratchy.default_tools import default_tools
from scratchy.errors import UsageError
from scratchy.tools import Tool, ToolResult

NAMES = [
    "read_file",
    "write_file",
    "edit_file",
    "delete_file",
    "list_files",
    "search_files",
    "run_command",
    "run_python",
    "fetch_url",
]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


def tools_for(root: Path, **options: Any) -> dict[str, Tool]:
    return {t.name: t for t in default_tools(root, **options)}


@pytest.fixture
def tools(ws: Path) -> dict[str, Tool]:
    return tools_for(ws)


async def call(tools: dict[str, Tool], name: str, **arguments: Any) -> ToolResult:
    return await tools[name].run(arguments)


async def ok(tools: dict[str, Tool], name: str, **arguments: Any) -> str:
    result = await call(tools, name, **arguments)
    assert not result.is_error, result.content
    return result.content


async def err(tools: dict[str, Tool], name: str, **arguments: Any) -> str:
    result = await call(tools, name, **arguments)
    assert result.is_error, result.content
    assert result.content.startswith("Error: ")
    return result.content


async def _gone(pid: int, wait: float = 2.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        await asyncio.sleep(0.02)
    return False


# --- setup ------------------------------------------------------------------------------------


def test_names_schemas_and_approval_flags(ws: Path) -> None:
    tools = default_tools(ws)
    assert [t.name for t in tools] == NAMES
    approval = {t.name for t in tools if t.needs_approval}
    assert approval == {"write_file", "edit_file", "delete_file", "run_command", "run_python"}
    for t in tools:
        assert t.description and t.schema()["function"]["parameters"]["type"] == "object"
    read = {t.name: t for t in tools}["read_file"].parameters["properties"]
    assert read["path"]["description"] == "The file path, relative to the workspace."


async def test_default_workspace_is_cwd_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "here.txt").write_text("first")
    monkeypatch.chdir(first)
    tools = {t.name: t for t in default_tools()}
    monkeypatch.chdir(second)
    assert await ok(tools, "read_file", path="here.txt") == "first"


def test_workspace_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        default_tools(tmp_path / "missing")


# --- workspace escapes ------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    return secret


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("read_file", {}),
        ("write_file", {"content": "x"}),
        ("edit_file", {"old_text": "top", "new_text": "x"}),
        ("delete_file", {}),
        ("list_files", {}),
        ("search_files", {"pattern": "secret"}),
    ],
)
async def test_escapes_are_refused(
    tools: dict[str, Tool], ws: Path, outside: Path, name: str, extra: dict[str, Any]
) -> None:
    (ws / "link").symlink_to(outside)
    (ws / "dirlink").symlink_to(outside.parent, target_is_directory=True)
    for path in ("../secret.txt", str(outside), "link", "dirlink/secret.txt", "a/../../secret.txt"):
        message = await err(tools, name, path=path, **extra)
        assert "is outside the workspace" in message
        assert "use a path inside it" in message
    assert outside.read_text() == "top secret"


async def test_absolute_path_inside_workspace_is_allowed(tools: dict[str, Tool], ws: Path) -> None:
    (ws / "a.txt").write_text("inside")
    assert await ok(tools, "read_file", path=str(ws / "a.txt")) == "inside"


async def test_symlink_inside_workspace_is_followed(tools: dict[str, Tool], ws: Path) -> None:
    (ws / "real.txt").write_text("real")
    (ws / "alias.txt").symlink_to(ws / "real.txt")
    assert await ok(tools, "read_file", path="alias.txt") == "real"


async def test_empty_path_is_refused(tools: dict[str, Tool]) -> None:
    assert "the path is empty" in await err(tools, "read_file", path="  ")


# --- read_file --------------------------------------------------------------------------------


async def test_read_file_whole_and_range(tools: dict[str, Tool], ws: Path) -> None:
    (ws / "f.txt").write_text("one\ntwo\nthree\nfour\n")
    assert await ok(tools, "read_file", path="f.txt") == "one\ntwo\nthree\nfour\n"
    assert await ok(tools, "read_file", path="f.txt", start_line=2, end_line=3) == "two\nthree\n"
    assert await ok(tools, "read_file", path="f.txt", start_line=4) == "four\n"
    assert await ok(tools, "read_file", path="f.txt", end_line=1) == "one\n"
    assert "past the end of f.txt (4 lines)" in await err(
        tools, "read_file", path="f.txt", start_line=9
    )
    assert "is before start_line" in await err(
        tools, "read_file", path="f.txt", start_line=3, end_line=2
    )
    assert "start_line: Input should be greater than or equal to 1" in await err(
        tools, "read_file", path="f.txt", start_line=0
    )


async def test_read_file_missing_binary_and_empty(tools: dict[str, Tool], ws: Path) -> None:
    assert "does not exist" in await err(tools, "read_file", path="nope.txt")
    (ws / "b.bin").write_bytes(b"\x00\x01\x02abc")
    assert "is a binary file" in await err(tools, "read_file", path="b.bin")
    (ws / "empty.txt").write_text("")
    assert await ok(tools, "read_file", path="empty.txt") == "(the file is empty)"


async def test_read_file_size_cap_says_where_to_continue(ws: Path) -> None:
    tools = tools_for(ws, max_output_chars=100)
    (ws / "big.txt").write_text("".join(f"line {i:04d}\n" for i in range(1, 101)))  # 10 chars each
    content = await ok(tools, "read_file", path="big.txt")
    assert content.startswith("line 0001\n")
    assert "line 0010\n" in content and "line 0011" not in content
    assert content.endswith("pass start_line=11 to read on]")
    more = await ok(tools, "read_file", path="big.txt", start_line=11)
    assert more.startswith("line 0011\n") and "start_line=21" in more
    (ws / "long.txt").write_text("x" * 500)
    cut = await ok(tools, "read_file", path="long.txt")
    assert cut.startswith("x" * 100 + "\n[truncated") and "start_line=2" in cut


# --- write / edit / delete ----------------------------------------------------------------------


async def test_write_file_creates_folders_and_is_atomic(tools: dict[str, Tool], ws: Path) -> None:
    message = await ok(tools, "write_file", path="new/dir/f.txt", content="héllo\n")
    assert message == "Wrote 6 characters to new/dir/f.txt"
    assert (ws / "new/dir/f.txt").read_text(encoding="utf-8") == "héllo\n"
    await ok(tools, "write_file", path="new/dir/f.txt", content="again")
    assert (ws / "new/dir/f.txt").read_text() == "again"
    assert sorted(p.name for p in (ws / "new/dir").iterdir()) == ["f.txt"]  # no temp files left
    assert "is a directory" in await err(tools, "write_file", path="new", content="x")


async def test_write_file_keeps_mode_and_uses_umask_for_new_files(
    tools: dict[str, Tool], ws: Path
) -> None:
    script = ws / "run.sh"
    script.write_text("echo 1")
    script.chmod(0o750)
    await ok(tools, "write_file", path="run.sh", content="echo 2")
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    await ok(tools, "write_file", path="fresh.txt", content="x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((ws / "fresh.txt").stat().st_mode) == 0o666 & ~umask


async def test_write_through_symlink_updates_target(tools: dict[str, Tool], ws: Path) -> None:
    (ws / "real.txt").write_text("old")
    (ws / "alias.txt").symlink_to(ws / "real.txt")
    await ok(tools, "write_file", path="alias.txt", content="new")
    assert (ws / "real.txt").read_text() == "new"
    assert (ws / "alias.txt").is_symlink()


async def test_edit_file_replaces_exactly_one_occurrence(tools: dict[str, Tool], ws: Path) -> None:
    f = ws / "code.py"
    f.write_bytes(b"def a():\r\n    return 1\r\n\r\ndef b():\r\n    return 1\r\n")
    message = await ok(
        tools, "edit_file", path="code.py", old_text="def b():\r\n    return 1", new_text="def b():"
    )
    assert message == "Edited code.py: replaced 1 occurrence"
    assert f.read_bytes() == b"def a():\r\n    return 1\r\n\r\ndef b():\r\n"  # CRLF kept


async def test_edit_file_not_found_and_not_unique(tools: dict[str, Tool], ws: Path) -> None:
    f = ws / "code.py"
    f.write_text("x = 1\nx = 1\ny = 2\n")
    missing = await err(tools, "edit_file", path="code.py", old_text="z = 3", new_text="")
    assert "old_text was not found in code.py" in missing
    assert "copy the text exactly" in missing
    twice = await err(tools, "edit_file", path="code.py", old_text="x = 1", new_text="x = 2")
    assert "old_text occurs 2 times in code.py" in twice
    assert "include more surrounding lines" in twice
    assert "is empty" in await err(tools, "edit_file", path="code.py", old_text="", new_text="a")
    assert f.read_text() == "x = 1\nx = 1\ny = 2\n"
    assert "does not exist" in await err(
        tools, "edit_file", path="nope.py", old_text="a", new_text="b"
    )
    (ws / "latin1.txt").write_bytes("café".encode("latin-1"))
    assert "is not UTF-8 text" in await err(
        tools, "edit_file", path="latin1.txt", old_text="caf", new_text="x"
    )


async def test_delete_file(tools: dict[str, Tool], ws: Path) -> None:
    (ws / "gone.txt").write_text("x")
    assert await ok(tools, "delete_file", path="gone.txt") == "Deleted gone.txt"
    assert not (ws / "gone.txt").exists()
    assert "does not exist" in await err(tools, "delete_file", path="gone.txt")
    (ws / "folder").mkdir()
    assert "is a directory" in await err(tools, "delete_file", path="folder")
    assert (ws / "folder").is_dir()


async def test_delete_symlink_removes_the_link_not_the_target(
    tools: dict[str, Tool], ws: Path
) -> None:
    (ws / "real.txt").write_text("keep me")
    (ws / "alias.txt").symlink_to(ws / "real.txt")
    assert await ok(tools, "delete_file", path="alias.txt") == "Deleted alias.txt"
    assert not (ws / "alias.txt").exists()
    assert (ws / "real.txt").read_text() == "keep me"


# --- list_files / search_files --------------------------------------------------------------------


@pytest.fixture
def tree(ws: Path) -> Path:
    (ws / ".gitignore").write_text("build/\n*.log\n!keep.log\n")
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "main.py").write_text("import os\n# TODO: main\n")
    (ws / "src" / "pkg" / "util.py").write_text("def helper():\n    pass  # todo lower\n")
    (ws / "src" / "pkg" / ".gitignore").write_text("generated.py\n")
    (ws / "src" / "pkg" / "generated.py").write_text("# TODO: generated\n")
    (ws / "build").mkdir()
    (ws / "build" / "out.py").write_text("# TODO: build\n")
    (ws / "debug.log").write_text("TODO: log\n")
    (ws / "keep.log").write_text("TODO: kept log\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("TODO: git\n")
    (ws / "image.png").write_bytes(b"\x89PNG\x00\x00TODO: binary")
    (ws / "README.md").write_text("Read me. TODO: docs\n")
    return ws


async def test_list_files_respects_gitignore(tools: dict[str, Tool], tree: Path) -> None:
    listed = (await ok(tools, "list_files")).splitlines()
    assert listed == [
        ".gitignore",
        "README.md",
        "image.png",
        "keep.log",
        "src/main.py",
        "src/pkg/.gitignore",
        "src/pkg/util.py",
    ]


async def test_list_files_pattern_path_and_cap(tools: dict[str, Tool], tree: Path) -> None:
    assert (await ok(tools, "list_files", pattern="*.py")).splitlines() == [
        "src/main.py",
        "src/pkg/util.py",
    ]
    assert (await ok(tools, "list_files", pattern="pkg/*.py", path="src")).splitlines() == [
        "src/pkg/util.py"
    ]
    capped = (await ok(tools, "list_files", max_results=2)).splitlines()
    assert capped[:2] == [".gitignore", "README.md"]
    assert capped[2].startswith("[stopped after 2 files")
    assert await ok(tools, "list_files", pattern="*.rs") == "No files match '*.rs' in ."
    assert "does not exist" in await err(tools, "list_files", path="missing")


async def test_search_files_respects_gitignore_binary_and_git(
    tools: dict[str, Tool], tree: Path
) -> None:
    found = (await ok(tools, "search_files", pattern="TODO")).splitlines()
    assert found == [
        "README.md:1: Read me. TODO: docs",
        "keep.log:1: TODO: kept log",
        "src/main.py:2: # TODO: main",
    ]


async def test_search_files_options(tools: dict[str, Tool], tree: Path) -> None:
    insensitive = await ok(tools, "search_files", pattern="todo", ignore_case=True, glob="*.py")
    assert insensitive.splitlines() == [
        "src/main.py:2: # TODO: main",
        "src/pkg/util.py:2:     pass  # todo lower",
    ]
    assert (await ok(tools, "search_files", pattern=r"^def \w+", path="src/pkg")).splitlines() == [
        "src/pkg/util.py:1: def helper():"
    ]
    assert await ok(tools, "search_files", pattern="nothing here") == (
        "No matches for 'nothing here' in ."
    )
    assert "invalid regular expression '(unclosed'" in await err(
        tools, "search_files", pattern="(unclosed"
    )
    single = await ok(tools, "search_files", pattern="import", path="src/main.py")
    assert single == "src/main.py:1: import os"


async def test_search_files_caps_results_and_counts_lines_across_chunks(
    tools: dict[str, Tool], ws: Path
) -> None:
    # ~2.4 MB: several 1 MiB chunks; a match every 10000 lines checks the line numbers.
    lines = [f"match {i}" if i % 10000 == 0 else f"filler line {i:07d}" for i in range(1, 120001)]
    (ws / "big.txt").write_text("\n".join(lines) + "\nlast match without newline")
    found = (await ok(tools, "search_files", pattern="match", max_results=50)).splitlines()
    expected = [f"big.txt:{n}: match {n}" for n in range(10000, 120001, 10000)]
    assert found == [*expected, "big.txt:120001: last match without newline"]
    capped = (await ok(tools, "search_files", pattern="match", max_results=3)).splitlines()
    assert capped[:3] == expected[:3]
    assert capped[3].startswith("[stopped after 3 matches")


async def test_search_files_reports_each_line_once(tools: dict[str, Tool], ws: Path) -> None:
    (ws / "f.txt").write_text("a a a\nb\na\n")
    assert (await ok(tools, "search_files", pattern="a")).splitlines() == [
        "f.txt:1: a a a",
        "f.txt:3: a",
    ]


async def test_search_files_is_fast(tools: dict[str, Tool], ws: Path) -> None:
    for d in range(20):
        folder = ws / f"d{d}"
        folder.mkdir()
        for f in range(25):
            (folder / f"f{f}.py").write_text("x = 1\n" * 2000)
    start = time.perf_counter()
    assert await ok(tools, "search_files", pattern="needle") == "No matches for 'needle' in ."
    assert time.perf_counter() - start < 2.0  # 500 files, 6 MB


# --- run_command / run_python ---------------------------------------------------------------


async def test_run_command_exit_code_combined_output_and_cwd(
    tools: dict[str, Tool], ws: Path
) -> None:
    out = await ok(tools, "run_command", command="pwd; echo to-out; echo to-err >&2; exit 3")
    assert out == f"exit code: 3\n{ws.resolve()}\nto-out\nto-err\n"
    assert await ok(tools, "run_command", command="true") == "exit code: 0\n(no output)"


async def test_run_command_timeout_kills_the_process_group(
    tools: dict[str, Tool], ws: Path
) -> None:
    start = time.perf_counter()
    message = await err(
        tools,
        "run_command",
        command="echo started; sleep 30 & echo $! > bg.pid; sleep 30; echo never",
        timeout=0.5,
    )
    assert time.perf_counter() - start < 3
    assert message.startswith("Error: timed out after 0.5 s and was killed")
    assert message.endswith("Output so far:\nstarted\n")
    assert await _gone(int((ws / "bg.pid").read_text()))  # the background child was killed too


async def test_run_command_background_process_does_not_hang(tools: dict[str, Tool]) -> None:
    start = time.perf_counter()
    out = await ok(tools, "run_command", command="sleep 30 & echo done")
    assert out == "exit code: 0\ndone\n"
    assert time.perf_counter() - start < 3


async def test_run_command_output_cap_keeps_head_and_tail(ws: Path) -> None:
    tools = tools_for(ws, max_output_chars=1000)
    out = await ok(tools, "run_command", command="seq 1 100000")
    assert out.startswith("exit code: 0\n1\n2\n3\n")
    assert out.endswith("99999\n100000\n")
    assert "bytes of output omitted ...]" in out
    assert len(out) < 1200


async def test_run_command_default_timeout_from_options(ws: Path) -> None:
    tools = tools_for(ws, command_timeout=0.3)
    assert "timed out after 0.3 s" in await err(tools, "run_command", command="sleep 5")


async def test_run_command_cancellation_kills_process(tools: dict[str, Tool], ws: Path) -> None:
    marker = ws / "pid.txt"
    task = asyncio.create_task(call(tools, "run_command", command="echo $$ > pid.txt; sleep 30"))
    for _ in range(100):
        if marker.exists() and marker.read_text().strip():
            break
        await asyncio.sleep(0.02)
    pid = int(marker.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _gone(pid)


async def test_run_python(tools: dict[str, Tool], ws: Path) -> None:
    out = await ok(tools, "run_python", code="import os, sys\nprint(os.getcwd(), 6 * 7)")
    assert out == f"exit code: 0\n{ws.resolve()} 42\n"
    failed = await ok(tools, "run_python", code="raise SystemExit('bad')")
    assert failed == "exit code: 1\nbad\n"
    crash = await ok(tools, "run_python", code="1/0")
    assert crash.startswith("exit code: 1\nTraceback") and "ZeroDivisionError" in crash
    assert "timed out after 0.3 s" in await err(
        tools, "run_python", code="import time; time.sleep(5)", timeout=0.3
    )
    version = await ok(tools, "run_python", code="import sys; print(sys.executable)")
    assert version == f"exit code: 0\n{sys.executable}\n"


# --- fetch_url --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {
        "/text": (200, "text/plain; charset=utf-8", "héllo wörld".encode()),
        "/json": (200, "application/json", b'{"a": 1}'),
        "/latin": (200, "text/plain; charset=latin-1", "café".encode("latin-1")),
        "/image": (200, "image/png", b"\x89PNG\x00\x00"),
        "/big": (200, "text/plain", b"0123456789\n" * 10000),
    }

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/text")
            self.end_headers()
            return
        status, ctype, body = self.routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_fetch_url_text(tools: dict[str, Tool], http_base: str) -> None:
    assert await ok(tools, "fetch_url", url=f"{http_base}/text") == "héllo wörld"
    assert await ok(tools, "fetch_url", url=f"{http_base}/json") == '{"a": 1}'
    assert await ok(tools, "fetch_url", url=f"{http_base}/latin") == "café"
    assert await ok(tools, "fetch_url", url=f"{http_base}/redirect") == "héllo wörld"


async def test_fetch_url_errors(tools: dict[str, Tool], http_base: str) -> None:
    assert "HTTP 404 Not Found" in await err(tools, "fetch_url", url=f"{http_base}/missing")
    assert "is image/png, not text" in await err(tools, "fetch_url", url=f"{http_base}/image")
    assert "is not an http(s) URL" in await err(tools, "fetch_url", url="file:///etc/passwd")


async def test_fetch_url_size_cap(ws: Path, http_base: str) -> None:
    tools = tools_for(ws, max_output_chars=100)
    content = await ok(tools, "fetch_url", url=f"{http_base}/big")
    assert content.startswith("0123456789\n" * 9)
    assert "[truncated: showing 99 of 400 characters" in content


async def test_listing_skips_caches_and_session_bookkeeping(tmp_path) -> None:
    from scratchy import SessionManager
    from scratchy.default_tools import default_tools

    SessionManager(tmp_path / "scratchy" / "session_history").save_session(
        "s", [{"role": "user", "content": "hi"}]
    )
    SessionManager(tmp_path / "scratchy" / "session_history").list_sessions()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "main.py").write_text("print('hi')\n")
    tools = {t.name: t for t in default_tools(tmp_path)}
    listed = (await tools["list_files"].run({})).content
    assert "main.py" in listed and "s_chat.toon" in listed
    assert ".locks" not in listed and ".index" not in listed and "__pycache__" not in listed

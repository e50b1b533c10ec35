"""The built-in tools: files, search, shell, Python and the web.

Every file tool works inside one workspace directory. Paths are resolved (symlinks included) and
refused when they land outside it, so ``../x``, ``/etc/passwd`` or a link pointing out of the
workspace cannot be read or written. Tools that change things (write, edit, delete, run a command
or Python code) have ``needs_approval=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pathspec
from pydantic import Field

from .errors import ToolError, UsageError
from .tools import Tool, ToolResult, tool

__all__ = ["default_tools"]

_BINARY_SNIFF = 8192
_CHUNK = 1 << 20
_MAX_LINE_SHOWN = 300
_TEXT_TYPES = re.compile(
    r"^(text/|application/(json|xml|xhtml\+xml|javascript|ecmascript|x-yaml|yaml|toml|"
    r"x-sh|x-python|sql|graphql|ld\+json|[\w.+-]*\+(json|xml)))",
    re.IGNORECASE,
)


# --- workspace ----------------------------------------------------------------------------------


class _Workspace:
    """Resolves the paths the model gives against one root directory and refuses escapes."""

    def __init__(self, root: str | Path | None) -> None:
        base = Path.cwd() if root is None else Path(root).expanduser()
        if not base.is_dir():
            raise UsageError(
                f"workspace {str(base)!r} is not a directory; create it or pick another"
            )
        self.root = base.resolve()

    def resolve(self, path: str) -> Path:
        """Return the absolute, symlink-free path for ``path``, or raise ToolError."""
        if not isinstance(path, str) or not path.strip():
            raise ToolError(
                "the path is empty; pass a path relative to the workspace, e.g. 'README.md'"
            )
        try:
            resolved = (self.root / Path(path).expanduser()).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ToolError(f"cannot resolve the path {path!r}: {exc}") from exc
        if not resolved.is_relative_to(self.root):
            raise ToolError(
                f"the path {path!r} is outside the workspace {self.root} (symlinks are followed); "
                f"use a path inside it, relative to the workspace, e.g. 'src/main.py'"
            )
        return resolved

    def rel(self, path: Path) -> str:
        """The workspace-relative form of ``path`` shown to the model."""
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)
        return rel or "."


class _Ignore:
    """The ``.gitignore`` rules of a tree; deeper files override shallower ones, as in git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
        if rel_dir not in self._specs:
            spec = None
            gitignore = self.root / rel_dir / ".gitignore"
            if gitignore.is_file():
                try:
                    lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
                    spec = pathspec.GitIgnoreSpec.from_lines(lines)
                except (OSError, ValueError):
                    spec = None
            self._specs[rel_dir] = spec
        return self._specs[rel_dir]

    def ignored(self, rel: str, is_dir: bool) -> bool:
        parts = rel.split("/")
        if ".git" in parts:
            return True
        result = False
        for i in range(len(parts)):
            spec = self._spec("/".join(parts[:i]))
            if spec is None:
                continue
            sub = "/".join(parts[i:]) + ("/" if is_dir else "")
            include = spec.check_file(sub).include
            if include is not None:
                result = include
        return result


_NEVER_WALK = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".hypothesis",
        ".locks",
        ".index",
        ".tmp",
        ".trash",
    }  # a session directory's own bookkeeping
)
"""Folders that list_files and search_files never enter: VCS data, caches, store internals."""


def _walk(ws: _Workspace, start: Path) -> Iterator[Path]:
    """Yield the files under ``start`` in a stable order, skipping .git, caches, Scratchy's
    session-store bookkeeping and ignored paths."""
    ignore = _Ignore(ws.root)
    if start.is_file():
        yield start
        return
    for dirpath, dirnames, filenames in os.walk(start):
        here = Path(dirpath)
        rel_dir = ws.rel(here)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _NEVER_WALK
            and not (here / d).is_symlink()  # a linked folder may lie outside the workspace
            and not ignore.ignored(prefix + d, True)
        )
        for name in sorted(filenames):
            if ignore.ignored(prefix + name, False):
                continue
            path = here / name
            if path.is_symlink():
                try:
                    target = path.resolve()
                except OSError:
                    continue
                if not target.is_relative_to(ws.root) or not target.is_file():
                    continue
            yield path


def _glob_spec(pattern: str | None) -> pathspec.GitIgnoreSpec | None:
    if pattern is None or pattern.strip() in ("", "*", "**", "**/*"):
        return None
    return pathspec.GitIgnoreSpec.from_lines([pattern.strip()])


def _rel_to(path: Path, start: Path) -> str:
    return path.relative_to(start).as_posix() if start.is_dir() else path.name


# --- file helpers ---------------------------------------------------------------------------------


_UMASK: int | None = None


def _default_mode() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _default_mode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _is_binary(sample: bytes) -> bool:
    return b"\0" in sample[:_BINARY_SNIFF]


def _read_text(path: Path, shown: str) -> str:
    """Read a whole UTF-8 text file for editing; refuse binary or non-UTF-8 files."""
    if not path.is_file():
        raise ToolError(f"{shown} does not exist or is not a file; check the path with list_files")
    data = path.read_bytes()
    if _is_binary(data):
        raise ToolError(f"{shown} is a binary file; only text files can be edited")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{shown} is not UTF-8 text ({exc}); it cannot be edited safely") from exc


def _cap(text: str, limit: int, hint: str) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    cut = limit if cut <= 0 else cut + 1
    return f"{text[:cut]}\n[truncated: showing {cut} of {len(text)} characters; {hint}]"


# --- processes ----------------------------------------------------------------------------------


class _OutputBuffer:
    """Keeps the head and the tail of a process's output within ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        omitted = self.total - len(self.head) - len(self.tail)
        if omitted <= 0:
            return head + tail
        return f"{head}\n[... {omitted} bytes of output omitted ...]\n{tail}"


def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the process and everything it started (it leads its own process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()


async def _run_process(
    argv: list[str] | None, command: str | None, *, cwd: Path, timeout: float, limit: int
) -> ToolResult:
    """Run a command with stdout and stderr merged; kill it and its children on timeout."""
    options: dict[str, object] = {
        "cwd": str(cwd),
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.STDOUT,
    }
    if os.name == "posix":
        options["start_new_session"] = True
    if command is not None:
        proc = await asyncio.create_subprocess_shell(command, **options)  # type: ignore[arg-type]
    else:
        assert argv is not None
        proc = await asyncio.create_subprocess_exec(*argv, **options)  # type: ignore[arg-type]
    buffer = _OutputBuffer(limit)

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            buffer.write(chunk)

    async def wait_for_exit() -> None:
        # On Python 3.11 ``proc.wait()`` also waits for the pipes to close, which a background
        # process (``sleep 60 &``) keeps open; so watch for EOF and poll the exit status.
        while True:
            done, _ = await asyncio.wait({reader}, timeout=0.05)
            if done:
                await proc.wait()
                return
            if proc.returncode is not None:
                # Exited; read what is left, briefly.
                await asyncio.wait({reader}, timeout=0.2)
                return

    reader = asyncio.create_task(pump())
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await wait_for_exit()
        except TimeoutError:
            timed_out = True
    finally:
        _kill(proc)
        # With the group killed the pipe reaches EOF; a process that left the group may still
        # hold it, so give up after a moment and close the pipe ourselves.
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(reader), 1.0)
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
        with contextlib.suppress(ProcessLookupError, OSError):
            await proc.wait()
    output = buffer.text()
    if timed_out:
        return ToolResult(
            f"Error: timed out after {timeout:g} s and was killed; make the command faster, run "
            f"less at once, or pass a larger timeout. Output so far:\n{output}",
            is_error=True,
        )
    return ToolResult(f"exit code: {proc.returncode}\n{output or '(no output)'}")


# --- the tools ----------------------------------------------------------------------------------


def default_tools(
    workspace: str | Path | None = None,
    *,
    max_output_chars: int = 50_000,
    command_timeout: float = 60.0,
    fetch_timeout: float = 30.0,
) -> list[Tool]:
    """Build the built-in tools, bound to one workspace directory.

    Args:
        workspace: The directory the file tools and commands work in; defaults to the current
            working directory at the time of this call.
        max_output_chars: The most text one call returns (file contents, command output, pages).
        command_timeout: Default seconds a command or Python snippet may run.
        fetch_timeout: Seconds ``fetch_url`` waits for a page.

    Returns:
        ``read_file``, ``write_file``, ``edit_file``, ``delete_file``, ``list_files``,
        ``search_files``, ``run_command``, ``run_python`` and ``fetch_url``.

    Raises:
        UsageError: The workspace is not a directory.
    """
    ws = _Workspace(workspace)
    limit = max_output_chars

    @tool
    def read_file(
        path: str,
        start_line: Annotated[int, Field(ge=1)] | None = None,
        end_line: Annotated[int, Field(ge=1)] | None = None,
    ) -> str:
        """Read a text file in the workspace, optionally only a range of lines.

        Args:
            path: The file path, relative to the workspace.
            start_line: First line to return (1-based, inclusive); default the first line.
            end_line: Last line to return (inclusive); default the end of the file.
        """
        file = ws.resolve(path)
        shown = ws.rel(file)
        if not file.is_file():
            raise ToolError(
                f"{shown} does not exist or is not a file; check the path with list_files"
            )
        if start_line is not None and end_line is not None and end_line < start_line:
            raise ToolError(f"end_line ({end_line}) is before start_line ({start_line})")
        with open(file, "rb") as fh:
            if _is_binary(fh.read(_BINARY_SNIFF)):
                raise ToolError(f"{shown} is a binary file; read_file only shows text")
        first = start_line or 1
        picked: list[str] = []
        size = 0
        number = 0
        with open(file, encoding="utf-8", errors="replace", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                if number < first:
                    continue
                if end_line is not None and number > end_line:
                    break
                if size + len(line) > limit:
                    # Stop before this line, or cut it when it alone is over the cap.
                    body, next_line = (
                        ("".join(picked), number) if picked else (line[:limit], number + 1)
                    )
                    return body + (
                        f"\n[truncated: the output is capped at {limit} characters; pass "
                        f"start_line={next_line} to read on]"
                    )
                picked.append(line)
                size += len(line)
        if first > 1 and first > number:
            raise ToolError(f"start_line {first} is past the end of {shown} ({number} lines)")
        if number == 0:
            return "(the file is empty)"
        return "".join(picked)

    @tool(needs_approval=True)
    def write_file(path: str, content: str) -> str:
        """Create or overwrite a text file in the workspace with the given content.

        Args:
            path: The file path, relative to the workspace; missing folders are created.
            content: The complete new content of the file.
        """
        file = ws.resolve(path)
        if file.is_dir():
            raise ToolError(f"{ws.rel(file)} is a directory; pass a file path")
        _atomic_write(file, content.encode("utf-8"))
        return f"Wrote {len(content)} characters to {ws.rel(file)}"

    @tool(needs_approval=True)
    def edit_file(path: str, old_text: str, new_text: str) -> str:
        """Replace one exact occurrence of old_text with new_text in a text file.

        Args:
            path: The file path, relative to the workspace.
            old_text: The exact text to replace, including whitespace; it must occur exactly once.
            new_text: The replacement text.
        """
        file = ws.resolve(path)
        shown = ws.rel(file)
        if not old_text:
            raise ToolError("old_text is empty; copy the exact text to replace from the file")
        text = _read_text(file, shown)
        count = text.count(old_text)
        if count == 0:
            raise ToolError(
                f"old_text was not found in {shown}; read the file and copy the text exactly, "
                f"including indentation and line breaks"
            )
        if count > 1:
            raise ToolError(
                f"old_text occurs {count} times in {shown}; include more surrounding lines so it "
                f"matches exactly once"
            )
        _atomic_write(file, text.replace(old_text, new_text, 1).encode("utf-8"))
        return f"Edited {shown}: replaced 1 occurrence"

    @tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file in the workspace (not a directory).

        Args:
            path: The file path, relative to the workspace.
        """
        file = ws.resolve(path)
        # Remove the link itself when the path is a symlink (its target was checked above).
        lexical = ws.resolve(str(Path(path).parent)) / Path(path).name
        shown = ws.rel(file)
        if file.is_dir() and not lexical.is_symlink():
            raise ToolError(f"{shown} is a directory; delete_file removes files only")
        if not lexical.is_symlink() and not file.exists():
            raise ToolError(f"{shown} does not exist; check the path with list_files")
        (lexical if lexical.is_symlink() else file).unlink()
        return f"Deleted {ws.rel(lexical)}"

    @tool
    def list_files(
        pattern: str = "*",
        path: str = ".",
        max_results: Annotated[int, Field(ge=1, le=5000)] = 500,
    ) -> str:
        """List files under a folder of the workspace, skipping those ignored by .gitignore.

        Args:
            pattern: A glob matched against paths below `path`, gitignore-style: '*.py' matches
                at any depth, 'src/**/*.py' below src.
            path: The folder to list, relative to the workspace.
            max_results: The most paths to return.
        """
        start = ws.resolve(path)
        if not start.exists():
            raise ToolError(f"{ws.rel(start)} does not exist; list '.' to see the workspace")
        spec = _glob_spec(pattern)
        found: list[str] = []
        for file in _walk(ws, start):
            if spec is not None and not spec.match_file(_rel_to(file, start)):
                continue
            if len(found) == max_results:
                found.append(f"[stopped after {max_results} files; narrow the pattern or path]")
                break
            found.append(ws.rel(file))
        if not found:
            return f"No files match {pattern!r} in {ws.rel(start)}"
        return _cap("\n".join(found), limit, "narrow the pattern or path")

    @tool
    def search_files(
        pattern: str,
        path: str = ".",
        glob: str | None = None,
        ignore_case: bool = False,
        max_results: Annotated[int, Field(ge=1, le=2000)] = 100,
    ) -> str:
        """Search text files for a regular expression; returns 'path:line: text' per match.

        Skips binary files, .git and paths ignored by .gitignore.

        Args:
            pattern: A Python regular expression, e.g. 'def \\w+_test' or 'TODO'.
            path: The folder or file to search, relative to the workspace.
            glob: Only search files matching this glob, e.g. '*.py'.
            ignore_case: Match without regard to case.
            max_results: The most matching lines to return.
        """
        try:
            regex = re.compile(pattern, re.MULTILINE | (re.IGNORECASE if ignore_case else 0))
        except re.error as exc:
            raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from exc
        start = ws.resolve(path)
        if not start.exists():
            raise ToolError(f"{ws.rel(start)} does not exist; list '.' to see the workspace")
        spec = _glob_spec(glob)
        results: list[str] = []
        for file in _walk(ws, start):
            if spec is not None and not spec.match_file(_rel_to(file, start)):
                continue
            if _search_file(file, ws.rel(file), regex, results, max_results):
                results.append(f"[stopped after {max_results} matches; narrow the pattern or path]")
                break
        if not results:
            return f"No matches for {pattern!r} in {ws.rel(start)}"
        return _cap("\n".join(results), limit, "narrow the pattern or path")

    @tool(needs_approval=True)
    async def run_command(
        command: str, timeout: Annotated[float, Field(gt=0, le=3600)] | None = None
    ) -> ToolResult:
        """Run a shell command in the workspace; returns the exit code and the combined output.

        Args:
            command: The shell command line, e.g. 'pytest -q tests/test_x.py'.
            timeout: Seconds before the command is killed.
        """
        seconds = timeout or command_timeout
        return await _run_process(None, command, cwd=ws.root, timeout=seconds, limit=limit)

    @tool(needs_approval=True)
    async def run_python(
        code: str, timeout: Annotated[float, Field(gt=0, le=3600)] | None = None
    ) -> ToolResult:
        """Run Python code in a fresh interpreter in the workspace; print what you want to see.

        Args:
            code: The Python source to run.
            timeout: Seconds before the process is killed.
        """
        seconds = timeout or command_timeout
        argv = [sys.executable, "-c", code]
        return await _run_process(argv, None, cwd=ws.root, timeout=seconds, limit=limit)

    @tool
    async def fetch_url(url: str) -> str:
        """Fetch a web page or other text resource over HTTP(S) and return its text.

        Args:
            url: The http:// or https:// address.
        """
        if not url.lower().startswith(("http://", "https://")):
            raise ToolError(
                f"{url!r} is not an http(s) URL; pass an address like https://example.com"
            )
        import httpx  # imported on first use: it costs ~50 ms at start-up

        max_bytes = limit * 4
        async with (
            httpx.AsyncClient(
                follow_redirects=True,
                timeout=fetch_timeout,
                headers={"User-Agent": "scratchy-fetch/0.1"},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise ToolError(f"HTTP {response.status_code} {response.reason_phrase} from {url}")
            ctype = response.headers.get("content-type", "").split(";")[0].strip()
            if ctype and not _TEXT_TYPES.match(ctype):
                raise ToolError(
                    f"{url} is {ctype}, not text; fetch_url only returns text (HTML, JSON, plain)"
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    break
            if not ctype and _is_binary(bytes(data)):
                raise ToolError(f"{url} returned binary data; fetch_url only returns text")
            text = bytes(data[:max_bytes]).decode(response.encoding or "utf-8", "replace")
        return _cap(text, limit, "the page was cut; fetch a more specific URL")

    return [
        read_file,
        write_file,
        edit_file,
        delete_file,
        list_files,
        search_files,
        run_command,
        run_python,
        fetch_url,
    ]


def _search_file(file: Path, shown: str, regex: re.Pattern[str], out: list[str], cap: int) -> bool:
    """Append ``shown:line: text`` for each matching line; return True once ``cap`` is reached.

    The file is read in 1 MiB chunks cut at line ends, and each chunk is scanned with one
    ``finditer`` call, which is much faster than matching line by line.
    """
    try:
        fh = open(file, "rb")
    except OSError:
        return False
    with fh:
        carry = b""
        line_no = 1
        first = True
        while True:
            chunk = fh.read(_CHUNK)
            if first:
                if _is_binary(chunk):
                    return False
                first = False
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n")
                if cut == -1:
                    carry = data
                    continue
                data, carry = data[: cut + 1], data[cut + 1 :]
            else:
                carry = b""
            if not data:
                break
            text = data.decode("utf-8", "replace")
            counted = 0
            last = 0
            for match in regex.finditer(text):
                begin = match.start()
                line_no += text.count("\n", counted, begin)
                counted = begin
                if line_no == last:
                    continue
                last = line_no
                line_start = text.rfind("\n", 0, begin) + 1
                line_end = text.find("\n", begin)
                line = text[line_start : line_end if line_end != -1 else len(text)].rstrip("\r")
                if len(line) > _MAX_LINE_SHOWN:
                    line = line[:_MAX_LINE_SHOWN] + "..."
                out.append(f"{shown}:{line_no}: {line}")
                if len(out) >= cap:
                    return True
            line_no += text.count("\n", counted)
            if not chunk:
                break
    return False

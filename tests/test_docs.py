"""Every example of the user documentation runs: ``docs/*.md`` and ``README.md``.

Collection
    Each fenced block of those files becomes one pytest case, with the id ``file:line`` (the line
    of the opening fence). ``python`` blocks and shell blocks (``bash``, ``console``, ``shell``)
    always run. Blocks of other languages (``text``, ``toon``, ``json``...) are illustrations and
    run only when a marker gives them a job (``output``, ``file``, ``save``, below).

One walkthrough per file
    The runnable blocks of one Markdown file run **in document order, in one temporary working
    directory**, and its Python blocks share **one namespace** and one event loop, as if a reader
    typed them one after the other into ``python -m asyncio``. So a page may build on its earlier
    blocks (``agent``, ``sm``...), and a shell block sees the sessions an earlier Python block
    saved. Asking for one case alone (``-k``) first runs the blocks before it. Each case reports
    the outcome of its own block only.

Python blocks
    Compiled with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`` (top-level ``await`` allowed; a coroutine
    result is run on the file's event loop) with ``SCRATCHY_MODEL=fake:``, the scripted echo model:
    ``Agent()`` answers ``"You said: <your text>"``. Tracebacks point at the Markdown line.

Shell blocks
    When the block has lines starting with ``$ ``, those are commands (a trailing ``\\`` continues
    one onto the next line) and the lines after each command, up to the next ``$ ``, are its
    expected output. Otherwise every line is a command and no output is shown. All commands of a
    block run in one ``bash`` process (so ``cd`` and ``export`` carry over), with the venv's
    ``scratchy`` and ``python`` first on ``PATH``, stdin empty, stderr merged into stdout. Every
    command must exit with status 0 (a doc that shows a failure writes ``cmd || echo "exit
    status $?"``), and when output is shown it must match (see *Comparison*).

Markers
    An HTML comment on the line before the fence, ``<!-- docs-test: NAME [ARGUMENT] -->``:

    ``transcript``
        An interactive REPL session: ``$ python run_agent.py ...``, ``$ scratchy chat ...`` or
        ``$ scripts/chat ...`` on the first line (the ``$ `` may be left out). It is replayed
        through a pseudo-terminal with ``tests.test_repl.Term``: every ``[session] You: text``
        line (and every tool-approval question ending in ``[y/n/a(lways)] answer``) is typed
        in, and the lines shown between two inputs are compared with what the REPL printed.
        Without a final ``/exit`` the replay ends with Ctrl-D. The REPL must exit with status 0.
    ``local-model``
        Runs the real embedded model (SmolLM2-135M in process); conftest's guard against real
        providers is lifted for this block only.
    ``local-openai-server``
        Needs an OpenAI-compatible server: it runs against the real llama.cpp server of the
        ``llama_server`` fixture. ``http://127.0.0.1:8080/v1`` in the block is replaced by the
        fixture's URL, and ``OPENAI_BASE_URL`` is set to it.
    ``postgres`` / ``redis``
        Every ``postgresql://...`` / ``redis://...`` URL in the block is replaced by the
        ``postgres_url`` / ``redis_url`` fixture's, with a schema (``?schema=``) or key prefix
        (``?prefix=``) private to the Markdown file.
    ``server``
        A block that starts or calls ``scratchy serve`` (docs/server.md): ``127.0.0.1:8000`` and
        ``--port 8000`` in it become a free port private to the Markdown file. A server started
        in the background writes its pid to ``serve.pid``; it is stopped after the module.
    ``output``
        A block showing what the previous Python block printed: compared with its stdout.
    ``file PATH``
        A block showing a file: compared with ``PATH`` in the working directory.
    ``save PATH``
        The block is written to ``PATH`` (a script or server later blocks run); a Python block is
        also compiled, to catch syntax errors.
    ``signature``
        A signature line (``async chat(text: str, session_id: str = "default") -> str``): its
        parameter names, kinds, defaults and ``async`` must match ``inspect.signature`` of the
        object named by the heading above it (see the API reference test below).
    ``pytest-collect-only``
        A command that runs this test suite (``scripts/test``): it runs with
        ``PYTEST_ADDOPTS=--collect-only``, so that set-up, lint and collection are checked
        without running the suite inside itself.

    ``README.md`` belongs to the lead; its blocks that need a marker and do not carry one yet get
    it from :data:`DEFAULT_MARKERS` (a marker written in the file wins).

Comparison
    Expected and actual output are compared line by line after normalising: blank lines are
    dropped, runs of spaces become one, timestamps (``2025-11-22 20:30:15``,
    ``2025-11-22T20:30:15.123+00:00``, ``2025-11-22 20:30``) become ``<TIME>``. In the expected
    text, a line ``...`` stands for any number of lines and ``<...>`` inside a line for any text.

The other tests check that every public name of ``scratchy.__all__`` is documented in
``docs/api-reference.md`` (and every name documented there exists), and that every relative
link of the docs and the README points at an existing file and heading anchor.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import inspect
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pytest

import scratchy
from tests.test_repl import ANSI, ROOT, Term

DOCS = ROOT / "docs"
DOC_FILES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
PYTHON_LANGS = {"python", "py", "python3"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
VENV_BIN = Path(sys.executable).parent
LOCAL_SERVER_PLACEHOLDER = "http://127.0.0.1:8080/v1"
MARKERS = {
    "transcript",
    "local-model",
    "local-openai-server",
    "postgres",
    "redis",
    "output",
    "file",
    "save",
    "pytest-collect-only",
    "signature",
    "server",
}
DEFAULT_MARKERS = {
    ("README.md", "scripts/chat --session my_project"): "transcript",
    ("README.md", "scripts/test"): "pytest-collect-only",
}
"""(file, first line of the block) -> marker, for README blocks without a marker."""

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<name>[\w-]+)(?:\s+(?P<arg>.*?))?\s*-->\s*$")
_TIME = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?(?![\d:])"
)
_INPUT = re.compile(r"^(?P<prompt>\[[\w.-]+\] You: |.*\[y/n/a\(lways\)\] )(?P<text>.*)$")
_ORIGINAL_STREAMS: dict[type, Any] = {}


# --- collecting blocks --------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    """1-based line of the opening fence."""
    lang: str
    code: str
    marker: str = ""
    arg: str = ""
    heading: str = ""
    """The last heading before the block."""
    index: int = 0
    """Position among the runnable blocks of its file."""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return (
            self.lang in PYTHON_LANGS
            or self.lang in SHELL_LANGS
            or self.marker in ("output", "file", "save", "signature")
        )


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with the marker on the line before it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    heading = ""
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            found_heading = _HEADING.match(lines[i])
            if found_heading:
                heading = found_heading.group(2)
            i += 1
            continue
        fence, indent = match.group("fence"), len(match.group("indent"))
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = lines[i].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        i += 1
        marker = arg = ""
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        found = _MARKER.match(lines[j]) if j >= 0 else None
        if found:
            marker, arg = found.group("name"), found.group("arg") or ""
        code = "\n".join(body) + "\n"
        if not marker and path.name == "README.md":
            marker = DEFAULT_MARKERS.get((path.name, body[0].strip() if body else ""), "")
        lang = match.group("lang").lower()
        blocks.append(Block(path, start + 1, lang, code, marker, arg, heading))
    runnable = [b for b in blocks if b.runnable]
    for n, block in enumerate(runnable):
        block.index = n
    return blocks


ALL_BLOCKS = {path: parse_blocks(path) for path in DOC_FILES}
RUNNABLE = {path: [b for b in blocks if b.runnable] for path, blocks in ALL_BLOCKS.items()}
CASES = [b for blocks in RUNNABLE.values() for b in blocks]


# --- normalising and comparing output -----------------------------------------------------------


def normalize(text: str) -> list[str]:
    """Lines without blank ones, spaces collapsed, timestamps replaced by ``<TIME>``."""
    out = []
    for line in ANSI.sub("", text).splitlines():
        line = " ".join(_TIME.sub("<TIME>", line).split())
        if line:
            out.append(line)
    return out


def matches(expected: str, actual: str) -> bool:
    """True when ``actual`` matches ``expected`` (``...`` lines and ``<...>`` wildcards)."""
    parts = []
    for line in normalize(expected):
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(re.escape(line).replace(re.escape("<...>"), r"[^\n]*?") + r"\n")
    text = "".join(line + "\n" for line in normalize(actual))
    return re.fullmatch("".join(parts), text) is not None


def assert_output(what: str, expected: str, actual: str) -> None:
    if not matches(expected, actual):
        shown = "\n".join(normalize(expected))
        got = "\n".join(normalize(actual))
        pytest.fail(
            f"{what}: the output differs.\n--- documented ---\n{shown}\n--- actual ---\n{got}"
        )


# --- running a file's blocks --------------------------------------------------------------------


@dataclass
class FileState:
    """One Markdown file's walkthrough: working directory, namespace, event loop, outcomes."""

    directory: Path
    namespace: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    outcomes: dict[int, BaseException | None] = field(default_factory=dict)
    last_stdout: str = ""
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    port: int = 0
    """The free port of ``server`` blocks (chosen on first use)."""


_STATES: dict[Path, FileState] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_states() -> Iterator[None]:
    yield
    for state in _STATES.values():
        pid_file = state.directory / "serve.pid"
        if state.port and pid_file.is_file():  # a server a docs-test: server block started
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        with contextlib.suppress(Exception):
            state.loop.run_until_complete(state.loop.shutdown_asyncgens())
        state.loop.close()
    _STATES.clear()


def _state(path: Path, factory: pytest.TempPathFactory) -> FileState:
    state = _STATES.get(path)
    if state is None:
        directory = factory.mktemp(path.stem)
        shutil.copy(ROOT / "run_agent.py", directory / "run_agent.py")
        namespace = {"__name__": "__docs__", "__file__": str(directory / "example.py")}
        state = _STATES[path] = FileState(directory, namespace, asyncio.new_event_loop())
    return state


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_url(url: str, key: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{key}={value}"


def _prepare(block: Block, state: FileState, request: pytest.FixtureRequest, mp) -> str:
    """The block's code with fixture URLs substituted; sets the environment it needs."""
    code = block.code
    if block.marker == "local-model":
        for cls, stream in _ORIGINAL_STREAMS.items():  # the conftest guard: this block asks
            mp.setattr(cls, "stream", stream)
    elif block.marker == "local-openai-server":
        base_url = request.getfixturevalue("llama_server")
        code = code.replace(LOCAL_SERVER_PLACEHOLDER, base_url)
        mp.setenv("OPENAI_BASE_URL", base_url)
        for cls, stream in _ORIGINAL_STREAMS.items():  # the conftest guard: this block asks
            mp.setattr(cls, "stream", stream)
    elif block.marker == "postgres":
        url = _with_url(request.getfixturevalue("postgres_url"), "schema", f"docs_{state.suffix}")
        code = re.sub(r"postgres(?:ql)?://[^\s\"'`]+", url, code)
    elif block.marker == "server":
        if not state.port:
            state.port = _free_port()
        code = code.replace("127.0.0.1:8000", f"127.0.0.1:{state.port}")
        code = code.replace("--port 8000", f"--port {state.port}")
    elif block.marker == "redis":
        url = _with_url(request.getfixturevalue("redis_url"), "prefix", f"docs-{state.suffix}:")
        code = re.sub(r"rediss?://[^\s\"'`]+", url, code)
    return code


def _environment(mp) -> None:
    mp.setenv("SCRATCHY_MODEL", "fake:")
    mp.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    mp.setenv("COLUMNS", "120")
    mp.setenv("NO_COLOR", "1")
    mp.setenv("PYTHONUNBUFFERED", "1")
    mp.setenv("SCRATCHY_DOCS_TEST", "1")


def run_python(block: Block, code: str, state: FileState) -> None:
    filename = str(block.path)
    source = "\n" * block.line + code  # line numbers in tracebacks are the Markdown file's
    compiled = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            result = eval(compiled, state.namespace)  # noqa: S307 - our own documentation
            if inspect.iscoroutine(result):
                state.loop.run_until_complete(result)
    finally:
        state.last_stdout = buffer.getvalue()
        sys.stdout.write(state.last_stdout)


def _commands(code: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a shell block."""
    lines = code.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return [(line, "") for line in lines if line.strip() and not line.lstrip().startswith("#")]
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if pairs:
                pairs[-1] = (pairs[-1][0], pairs[-1][1] + line + "\n")
            i += 1
            continue
        command = line[2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + "\n" + lines[i]
        pairs.append((command, ""))
        i += 1
    return pairs


def run_shell(block: Block, code: str, state: FileState, env: dict[str, str]) -> None:
    pairs = _commands(code)
    assert pairs, f"{block.id}: a shell block without commands"
    # the set-up scripts are run from the repository root, as the README says
    pairs = [(re.sub(r"^scripts/", f"{ROOT}/scripts/", c), e) for c, e in pairs]
    separator = f"@@docs-test-{uuid.uuid4().hex}@@"
    script = "exec 2>&1\n" + "".join(f'{c}\necho "{separator} $?"\n' for c, _ in pairs)
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=state.directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    chunks = proc.stdout.split(separator)
    for n, (command, expected) in enumerate(pairs):
        assert n + 1 < len(chunks), (
            f"{block.id}: `{command}` did not finish (bash exited {proc.returncode}):\n"
            + proc.stdout
        )
        output = chunks[n] if n == 0 else chunks[n].split("\n", 1)[1] if "\n" in chunks[n] else ""
        status = int(chunks[n + 1].split("\n", 1)[0].strip())
        assert status == 0, f"{block.id}: `{command}` exited with status {status}:\n{output}"
        if expected.strip():
            assert_output(f"{block.id}: `{command}`", expected, output)


class DocTerm(Term):
    """``Term`` (tests/test_repl.py) for any command line: ``bash -c COMMAND`` in a pty."""

    def __init__(self, cwd: Path, command: str, env: dict[str, str]) -> None:
        environ = dict(env, PROMPT_TOOLKIT_NO_CPR="1", NO_COLOR="1", TERM="dumb")
        self.child = pexpect.spawn(
            "bash",
            ["-c", command],
            cwd=str(cwd),
            env=environ,
            encoding="utf-8",
            timeout=60,
            dimensions=(50, 120),
        )
        self.out = ""


def run_transcript(block: Block, code: str, state: FileState, env: dict[str, str]) -> None:
    lines = code.splitlines()
    assert lines, f"{block.id}: an empty transcript"
    command = lines[0].removeprefix("$ ")  # the command line, with or without a prompt
    if command.startswith("scripts/"):  # the set-up scripts run from the repository root
        command = f"{ROOT}/{command}"
        env = dict(env, SCRATCHY_SESSION_DIR=str(state.directory / "scratchy/session_history"))
    steps: list[tuple[str, str, list[str]]] = []  # (prompt, typed text, output lines after it)
    before: list[str] = []
    for line in lines[1:]:
        found = _INPUT.match(line)
        if found:
            steps.append((found.group("prompt"), found.group("text"), []))
        elif steps:
            steps[-1][2].append(line)
        else:
            before.append(line)
    term = DocTerm(state.directory, command, env)
    try:
        # scripts/chat may install into the venv on its first run: give its first prompt time
        _replay(block, term, before, steps, 600 if command.startswith(str(ROOT)) else 60)
    finally:
        if term.child.isalive():
            term.child.terminate(force=True)
    term.child.close()
    assert term.child.exitstatus == 0, f"{block.id}: the REPL exited with {term.child.exitstatus}"


def _replay(
    block: Block,
    term: DocTerm,
    before: list[str],
    steps: list[tuple[str, str, list[str]]],
    first_timeout: float,
) -> None:
    child = term.child
    any_prompt = re.compile(r"\[[\w.-]+\] You: |\[y/n/a\(lways\)\] ")

    def expect(pattern: Any, timeout: float = -1) -> str:
        try:
            child.expect(pattern, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            seen = ANSI.sub("", child.before or "")
            pytest.fail(f"{block.id}: waited for {pattern!r}; the REPL printed:\n{seen}\n{exc}")
        return ANSI.sub("", child.before or "")

    first = re.escape(steps[0][0]) if steps else any_prompt
    printed = expect(first, first_timeout)
    if before:
        assert_output(f"{block.id}: before the first prompt", "\n".join(before), printed)
    for n, (_prompt, text, expected) in enumerate(steps):
        time.sleep(0.05)  # let prompt_toolkit switch the terminal to raw mode first
        child.sendline(text)
        last = n + 1 == len(steps)
        if last and text.strip() in ("/exit", "/quit"):
            printed = expect(pexpect.EOF)
        elif last:
            printed = expect(any_prompt)
        else:
            printed = expect(re.escape(steps[n + 1][0]))
        out = printed.split("\n")
        if out and text in out[0]:
            out = out[1:]  # the echo of the typed line
        if not last or expected or text.strip() in ("/exit", "/quit"):
            assert_output(f"{block.id}: after `{text}`", "\n".join(expected), "\n".join(out))
    if not steps or steps[-1][1].strip() not in ("/exit", "/quit"):
        time.sleep(0.05)
        child.sendcontrol("d")
        expect(pexpect.EOF)


def _documented_signature(text: str) -> tuple[bool, list[tuple[str, str, Any]]]:
    """(async?, [(name, kind, default)]) of a signature line such as ``async f(a, *, b=1)``."""
    text = " ".join(re.sub(r"#[^\n]*", "", text).split())
    is_async = text.startswith("async ")
    text = text.removeprefix("async ")
    args = text[text.index("(") + 1 : text.rindex(")")]
    tree = ast.parse(f"def f({args}): pass").body[0].args  # type: ignore[attr-defined]
    missing = object()
    out: list[tuple[str, str, Any]] = []

    def default(node: ast.expr | None) -> Any:
        if node is None:
            return missing
        try:
            return ast.literal_eval(node)
        except ValueError:
            return ...  # a name such as DEFAULT_SYSTEM_PROMPT: any default

    positional = tree.posonlyargs + tree.args
    defaults = [None] * (len(positional) - len(tree.defaults)) + list(tree.defaults)
    for n, (arg, node) in enumerate(zip(positional, defaults, strict=True)):
        kind = "POSITIONAL_ONLY" if n < len(tree.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, default(node)))
    if tree.vararg:
        out.append((tree.vararg.arg, "VAR_POSITIONAL", missing))
    for arg, node in zip(tree.kwonlyargs, tree.kw_defaults, strict=True):
        out.append((arg.arg, "KEYWORD_ONLY", default(node)))
    if tree.kwarg:
        out.append((tree.kwarg.arg, "VAR_KEYWORD", missing))
    return is_async, [(n, k, None if d is missing else d) for n, k, d in out]


def check_signature(block: Block) -> None:
    """The signature shown matches the object named by the heading above the block."""
    name = re.fullmatch(r"`([^`]+)`", block.heading)
    assert name, f"{block.id}: a signature block must follow a heading like ### `Agent.chat()`"
    obj = resolve(re.sub(r"\(.*\)$", "", name.group(1)))
    is_async, shown = _documented_signature(block.code)
    real = [
        (p.name, p.kind.name, None if p.default is p.empty else p.default)
        for p in inspect.signature(obj).parameters.values()
        if p.name not in ("self", "cls")
    ]
    real_async = inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj)
    assert is_async == real_async, f"{block.id}: async is {real_async} in the code"
    problems = []
    if [(n, k) for n, k, _ in shown] != [(n, k) for n, k, _ in real]:
        problems.append(f"parameters: documented {shown}, code {real}")
    for (n, _, doc_default), (_, _, code_default) in zip(shown, real, strict=False):
        if doc_default is not ... and doc_default != code_default:
            problems.append(f"default of {n}: documented {doc_default!r}, code {code_default!r}")
    assert not problems, f"{block.id}: the signature of {name.group(1)} differs: " + "; ".join(
        problems
    )


def _run_block(block: Block, state: FileState, request: pytest.FixtureRequest, mp) -> None:
    _environment(mp)
    code = _prepare(block, state, request, mp)
    mp.chdir(state.directory)
    env = dict(os.environ)
    if block.marker == "output":
        assert_output(f"{block.id}: printed by the block before", code, state.last_stdout)
    elif block.marker == "file":
        target = state.directory / block.arg
        assert target.is_file(), f"{block.id}: {block.arg} was not written"
        assert_output(f"{block.id}: {block.arg}", code, target.read_text(encoding="utf-8"))
    elif block.marker == "save":
        target = state.directory / block.arg
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
        if block.lang in PYTHON_LANGS:
            compile(code, str(target), "exec")
    elif block.marker == "signature":
        check_signature(block)
    elif block.marker == "transcript":
        run_transcript(block, code, state, env)
    elif block.lang in PYTHON_LANGS:
        run_python(block, code, state)
    elif block.marker == "pytest-collect-only":
        env["PYTEST_ADDOPTS"] = "--collect-only -q"
        run_shell(block, code, state, env)
    else:
        run_shell(block, code, state, env)


@pytest.mark.parametrize("block", CASES, ids=[b.id for b in CASES])
def test_example(
    block: Block, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert block.marker in MARKERS or not block.marker, (
        f"{block.id}: unknown marker {block.marker!r} (known: {', '.join(sorted(MARKERS))})"
    )
    state = _state(block.path, tmp_path_factory)
    for earlier in RUNNABLE[block.path][: block.index + 1]:
        if earlier.index in state.outcomes:
            continue
        with pytest.MonkeyPatch.context() as mp:
            try:
                _run_block(earlier, state, request, mp)
            except BaseException as exc:  # noqa: BLE001 - reported by that block's own case
                if isinstance(exc, KeyboardInterrupt):
                    raise
                state.outcomes[earlier.index] = exc
            else:
                state.outcomes[earlier.index] = None
    outcome = state.outcomes[block.index]
    if outcome is not None:
        raise outcome


def test_blocks_were_found() -> None:
    assert (DOCS / "api-reference.md").is_file()
    assert len(CASES) > 50, [b.id for b in CASES]
    for blocks in ALL_BLOCKS.values():
        for block in blocks:
            assert not block.marker or block.marker in MARKERS, f"{block.id}: {block.marker}"


# --- the API reference --------------------------------------------------------------------------


def _headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every heading outside code blocks."""
    out = []
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            continue
        match = _HEADING.match(line)
        if match and not in_code:
            out.append((len(match.group(1)), match.group(2)))
    return out


def documented_names() -> list[str]:
    """Names the reference documents: headings ``### `dotted.name` `` and ``## Name class``."""
    names = []
    for _, text in _headings(DOCS / "api-reference.md"):
        code = re.fullmatch(r"`([^`]+)`", text)
        if code:
            names.append(re.sub(r"\(.*\)$", "", code.group(1)))
        cls = re.fullmatch(r"(\w+) class", text)
        if cls:
            names.append(cls.group(1))
    return names


def resolve(name: str) -> Any:
    """The object ``name`` denotes: ``Agent.chat`` on ``scratchy``, or a full module path."""
    parts = name.split(".")
    if parts[0] != "scratchy":
        obj: Any = scratchy
        for part in parts:
            obj = getattr(obj, part)
        return obj
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(name)


def test_every_public_name_is_documented() -> None:
    names = set(documented_names())
    missing = [n for n in scratchy.__all__ if n not in names and f"scratchy.{n}" not in names]
    assert not missing, f"not documented in docs/api-reference.md: {missing}"


def test_every_documented_name_exists() -> None:
    names = documented_names()
    assert len(names) > 40
    gone = []
    for name in names:
        try:
            resolve(name)
        except (AttributeError, ImportError) as exc:
            gone.append(f"{name}: {exc}")
    assert not gone, "documented in docs/api-reference.md but not in the package:\n" + "\n".join(
        gone
    )


def test_sessionmanager_anchor_exists() -> None:
    assert "sessionmanager-class" in anchors(DOCS / "api-reference.md")
    assert "session-management" in anchors(DOCS / "examples.md")


# --- links --------------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: keep their text
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, text in _headings(path):
        base = slug(text)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    text = path.read_text(encoding="utf-8")
    found.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return found


def _prose(path: Path) -> str:
    """The Markdown text without fenced blocks and inline code."""
    kept = []
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def test_relative_links_point_at_files_and_anchors() -> None:
    broken = []
    checked = 0
    for path in DOC_FILES:
        for target in _LINK.findall(_prose(path)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            checked += 1
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert checked > 10
    assert not broken, "\n".join(broken)


def _remember_real_streams() -> None:
    from scratchy.providers.anthropic import AnthropicProvider
    from scratchy.providers.local import LocalProvider
    from scratchy.providers.openai_compat import OpenAICompatProvider

    for cls in (AnthropicProvider, LocalProvider, OpenAICompatProvider):
        _ORIGINAL_STREAMS[cls] = cls.stream


_remember_real_streams()  # before conftest's guard replaces them during each test

"""The interactive chat: ``python run_agent.py`` / ``scratchy chat``.

Input comes from prompt_toolkit (history, completion, multi-line with Esc+Enter), output goes
through rich. Slash commands live in :data:`COMMANDS` (see ``cli/commands.py``); this module runs
the loop, streams turns, and handles Ctrl-C (cancel the turn) and Ctrl-D (exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..agent import Agent, FinalEvent, ToolCallEvent, ToolResultEvent
from ..errors import ScratchyError
from ..providers.base import TextDelta
from ..sessions import SessionManager
from .render import ReplyStream, call_summary, short


class Repl:
    """One interactive chat: an agent, the current session id, and the terminal."""

    def __init__(
        self,
        agent: Agent,
        session_id: str,
        *,
        console: Console | None = None,
        err_console: Console | None = None,
        debug: bool = False,
        tools: bool = True,
        markdown: bool = True,
    ) -> None:
        self.agent = agent
        self.markdown = markdown
        self._tools_pending = tools  # loaded just after the first prompt shows
        self.session_id = session_id
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.err = err_console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.debug = debug
        self.running = True
        self._prompt: Any = None
        self._turn: asyncio.Task[None] | None = None
        self.cleared: tuple[str, list[Any]] | None = None  # what the last /clear removed

    @property
    def sm(self) -> SessionManager:
        """The session manager the agent saves to."""
        assert self.agent.session_manager is not None
        return self.agent.session_manager

    # -- output helpers ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print a line of REPL output (no markup interpretation)."""
        self.console.print(text, markup=False)

    def say_wrapped(self, text: str, first: str = "", rest: str = "") -> None:
        """Print ``text`` wrapped at word boundaries to the terminal's width (at least 40
        columns), the first line after ``first``, the others after ``rest``."""
        lines = textwrap.wrap(
            text,
            width=max(40, self.width() - 1),
            initial_indent=first,
            subsequent_indent=rest,
            break_on_hyphens=False,
            break_long_words=False,  # an id or a path stays whole
        )
        for line in lines or [first.rstrip()]:
            self.say(line)

    def error(self, text: str) -> None:
        """Print one red error line."""
        self.err.print(f"[red]{escape(text)}[/red]")

    # -- input -------------------------------------------------------------------------------

    def _make_prompt(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        from .commands import SlashCompleter

        history: Any
        try:
            history = FileHistory(str(_private_file(history_path())))
        except OSError:
            history = InMemoryHistory()
        keys = KeyBindings()

        @keys.add("escape", "enter")
        def _newline(event: Any) -> None:  # Esc+Enter (or Alt+Enter) starts a new line
            event.current_buffer.insert_text("\n")

        return PromptSession(
            history=history,
            completer=SlashCompleter(self),
            complete_while_typing=False,
            enable_history_search=True,
            key_bindings=keys,
            # dots before the lines of a multi-line message; a long line wraps to column 0
            prompt_continuation=lambda width, line, wrap: "" if wrap else "." * (width - 1) + " ",
        )

    async def read_line(self) -> str | None:
        """The next input (None at Ctrl-D); Ctrl-C at the prompt clears the line."""
        if self._prompt is None:
            self._prompt = self._make_prompt()
        while True:
            try:
                return clean_input(await self._prompt.prompt_async(self.prompt_text))
            except KeyboardInterrupt:
                continue
            except EOFError:
                return None

    def prompt_text(self) -> str:
        """The input prompt, ``[session] You: ``, with a long id shortened to a third of the
        terminal's width so that input always has room."""
        return f"[{self.short_id()}] You: "

    def short_id(self, session_id: str | None = None) -> str:
        """``session_id`` (default: the current one) cut to a third of the width with ``…``."""
        sid = self.session_id if session_id is None else session_id
        room = max(8, self.width() // 3)
        return sid if len(sid) <= room else sid[: room - 1] + "…"

    def width(self) -> int:
        """The terminal's width in columns (rich assumes 80 on a dumb terminal)."""
        if self._prompt is not None:
            with contextlib.suppress(Exception):
                return int(self._prompt.app.output.get_size().columns)
        return shutil.get_terminal_size().columns

    async def ask(self, question: str) -> str:
        """Ask a question at the prompt (used for tool approval)."""
        if self._prompt is None:
            self._prompt = self._make_prompt()
        try:
            return clean_input(await self._prompt.prompt_async(question)).strip().lower()
        except (KeyboardInterrupt, EOFError):
            return "n"
        finally:
            self._arm_ctrl_c()  # prompt_toolkit removed the turn's Ctrl-C handler

    def _arm_ctrl_c(self) -> None:
        """Make Ctrl-C cancel the running turn (again)."""
        if self._turn is None or self._turn.done():
            return
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._turn.cancel)

    async def approve(self, name: str, args: dict[str, Any]) -> bool | str:
        """The approval callback: y / n / a(lways)."""
        answer = await self.ask(f"  ⚠ Allow {call_summary(name, args)}? [y/n/a(lways)] ")
        if answer in ("a", "always"):
            return "always"
        return answer in ("y", "yes")

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Read, dispatch, repeat until /exit or Ctrl-D."""
        from .commands import dispatch

        self.agent.get_session(self.session_id)
        self.model_notice()
        self._warm_up()
        asyncio.get_running_loop().call_later(0.05, self.ensure_tools)
        while self.running:
            line = await self.read_line()
            if line is None:
                break
            if not line.strip():
                continue
            if line.startswith("//"):  # the escape for a message that starts with "/"
                line = line[1:]
            elif line.startswith("/"):
                try:
                    await dispatch(self, line)
                except ScratchyError as exc:
                    self.error(error_line(exc))
                continue
            await self.turn(line)
        return self.goodbye()

    def goodbye(self) -> int:
        """Store what is left, check the store holds every session as shown, and say so."""
        unsaved: list[str] = []
        for sid, session in list(self.agent.sessions.items()):
            if stored_as_in_memory(self, sid):
                continue
            try:
                self.agent.save(session)
            except ScratchyError as exc:
                self.error(f"Error: session '{sid}' could not be saved: {exc}")
            if not stored_as_in_memory(self, sid):
                unsaved.append(sid)
        if unsaved:
            names = ", ".join(f"'{s}'" for s in unsaved)
            self.error(f"👋 Bye. NOT saved: {names} (the store does not hold what was shown).")
            return 1
        self.say("👋 Bye. Your sessions are saved.")
        return 0

    def model_notice(self) -> None:
        """One line at start when the model is the embedded demo model."""
        notice = demo_model_notice(self.agent)
        if notice:
            self.say_wrapped(notice, "", "  ")

    def ensure_tools(self) -> None:
        """Add the built-in tools, once (deferred so that the first prompt shows sooner)."""
        if self._tools_pending:
            self._tools_pending = False
            self.agent.load_default_tools()

    def _warm_up(self) -> None:
        """Load a local model in the background, so the first answer comes sooner."""
        try:
            provider = self.agent.provider
        except ScratchyError as exc:
            self.error(f"Error: {exc}")
            return
        task = asyncio.ensure_future(provider.load())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def turn(self, text: str) -> None:
        """Run one turn as a task that Ctrl-C cancels."""
        self.ensure_tools()
        self._turn = asyncio.ensure_future(self._stream(text))
        loop = asyncio.get_running_loop()
        self._arm_ctrl_c()
        try:
            await self._turn
        except asyncio.CancelledError:
            if not self._turn.cancelled():
                raise
            self.error("⏹ Cancelled. The session is saved; the partial answer was dropped.")
        except ScratchyError as exc:
            self.error(error_line(exc))
        except Exception as exc:
            if self.debug:
                self.err.print_exception()
            self.error(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self._turn = None

    async def _stream(self, text: str) -> None:
        label = f"[{self.short_id()}] 🤖 Assistant: "
        reply = ReplyStream(self.console, label, markdown=self.markdown)
        loading = not self.agent.provider.loaded
        reply.waiting("Loading the local model…" if loading else "Thinking…")
        try:
            async for event in self.agent.stream(text, session_id=self.session_id):
                if isinstance(event, TextDelta):
                    reply.add(event.text)
                elif isinstance(event, ToolCallEvent):
                    reply.close()  # also stops the spinner before an approval question
                    summary = escape(call_summary(event.name, event.arguments))
                    self.console.print(f"  [cyan]⚙ {summary}[/cyan]")
                elif isinstance(event, ToolResultEvent):
                    style = "red" if event.is_error else "dim"
                    lines = event.content.count("\n") + 1
                    more = f" (+{lines - 1} lines)" if lines > 1 else ""
                    self.console.print(
                        f"  [{style}]↳ {escape(short(event.content, 90))}{more}[/{style}]"
                    )
                    reply.waiting("Thinking…")
                elif isinstance(event, FinalEvent):
                    reply.close(event.text)
        finally:
            reply.close()


def _data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("scratchy", appauthor=False))


HISTORY_ENV = "SCRATCHY_HISTORY_FILE"


def history_path() -> Path:
    """Where typed input is remembered: ``$SCRATCHY_HISTORY_FILE``, else ``history`` in the
    user data directory (``~/.local/share/scratchy/history`` on Linux)."""
    return Path(os.environ.get(HISTORY_ENV) or _data_dir() / "history")


def _private_file(path: Path) -> Path:
    """Create ``path`` (and its folder) readable by its owner only, and make it so if it
    exists: the input history holds every message typed."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    if os.name == "posix" and path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


def clean_input(text: str) -> str:
    """``text`` with anything that is not valid Unicode (a byte that was not UTF-8 arrives as a
    lone surrogate) replaced by U+FFFD, so that every session stays savable."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def stored_as_in_memory(repl: Repl, session_id: str) -> bool:
    """True when the store holds what the REPL shows for ``session_id`` (a session with only
    its system prompt counts as stored when the store has it empty or not at all)."""
    session = repl.agent.sessions.get(session_id)
    memory = session.messages if session is not None else []
    try:
        stored = repl.sm.load_session(session_id)
    except ScratchyError:  # corrupted, or the store is unreachable: not what is shown
        return False
    if stored == memory:
        return True
    return not stored and all(m.get("role") == "system" for m in memory)


def demo_model_notice(agent: Agent) -> str | None:
    """The line that says the embedded model is a tiny demo, and how to use a real one."""
    try:
        provider = agent.provider
    except Exception:  # noqa: BLE001 - reported where the provider is used
        return None
    if provider.name != "local" or provider.model != "smollm2":
        return None
    return (
        "ℹ SmolLM2-135M (local:smollm2) is a tiny offline demo model. For real answers use "
        "--model, e.g. -m openai:gpt-4o-mini with OPENAI_API_KEY set, or set SCRATCHY_MODEL."
    )


def build_agent(
    *, model: str | None, directory: str | None, approve: str, memory: str = "off"
) -> Agent:
    """The agent the CLI uses (tools are added by the caller)."""
    mode = {"off": False, "on": True, "auto": "auto"}[memory]
    manager = SessionManager(directory)
    return Agent(model=model, session_manager=manager, tool_approval=approve, memory=mode)  # type: ignore[arg-type]


def run_chat(
    *,
    session_id: str = "default",
    model: str | None = None,
    directory: str | None = None,
    approve: str = "ask",
    tools: bool = True,
    debug: bool = False,
    question: str | None = None,
    markdown: bool = True,
    memory: str = "off",
) -> int:
    """Run the REPL, or answer one question (argument or piped stdin) and exit.

    Input is kept as typed (indentation included); bytes that are not UTF-8 become U+FFFD.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    quiet = no_tty_echo() if question is None else contextlib.nullcontext()
    with quiet:
        return _run_chat(
            err, session_id, model, directory, approve, tools, debug, question, markdown, memory
        )


def _run_chat(
    err: Console,
    session_id: str,
    model: str | None,
    directory: str | None,
    approve: str,
    tools: bool,
    debug: bool,
    question: str | None,
    markdown: bool,
    memory: str = "off",
) -> int:
    try:
        SessionManager.validate_id(session_id)
        agent = build_agent(model=model, directory=directory, approve=approve, memory=memory)
        try:
            agent.provider  # noqa: B018 - a model that cannot be built is reported here
        except ScratchyError:
            pass  # (missing key, SDK...): reported when the model is first used
        except (OSError, ValueError) as exc:
            err.print(f"[red]Error: {escape(model_problem(exc, model))}[/red]")
            return 1
        if question is None and not sys.stdin.isatty():
            question = read_stdin()
            if question is None:
                err.print("[red]Nothing to answer: give a question or type it on stdin[/red]")
                return 2
        if question is not None:
            question = clean_input(question)
            if tools:
                agent.load_default_tools()
            return asyncio.run(_answer_once(agent, session_id, question))
        repl = Repl(agent, session_id, err_console=err, debug=debug, tools=tools, markdown=markdown)
        agent.callbacks.on_tool_approval = repl.approve
        return asyncio.run(_run(repl))
    except ScratchyError as exc:
        if debug:
            err.print_exception()
        err.print(f"[red]Error: {escape(str(exc))}[/red]")
        return 1


@contextlib.contextmanager
def no_tty_echo() -> Iterator[None]:
    """Stop the terminal from echoing what is typed while no prompt is shown (at start-up,
    during a reply): prompt_toolkit shows typed-ahead text itself, so it would appear twice."""
    try:
        import termios

        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (ImportError, OSError, ValueError):
        old = None
    if old is None:
        yield
        return
    quiet = list(old)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            termios.tcsetattr(fd, termios.TCSANOW, old)


def read_stdin() -> str | None:
    """All of stdin as text (None when it is blank), decoded as UTF-8 with U+FFFD for bad
    bytes; only the final line breaks are dropped."""
    data = sys.stdin.buffer.read().decode("utf-8", "replace")
    if data.startswith("\ufeff"):
        data = data[1:]
    return data.rstrip("\r\n") if data.strip() else None


def model_problem(exc: Exception, spec: str | None, switch: str = "--model") -> str:
    """One line for a model that cannot be built (a script file missing or not JSON...)."""
    spec = spec or os.environ.get("SCRATCHY_MODEL")
    what = f"the model '{spec}'" if spec else "the model"
    if isinstance(exc, OSError):
        detail = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    elif isinstance(exc, json.JSONDecodeError):
        detail = f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
    else:
        detail = str(exc) or type(exc).__name__
    return f"Cannot use {what}: {detail}. Fix it, or choose another model with {switch}."


async def _run(repl: Repl) -> int:
    try:
        return await repl.run()
    finally:
        await repl.agent.aclose()


async def _answer_once(agent: Agent, session_id: str, question: str) -> int:
    streamed = False
    try:
        async for event in agent.stream(question, session_id=session_id):
            if isinstance(event, TextDelta):
                streamed = True
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, ToolCallEvent):
                print(f"⚙ {call_summary(event.name, event.arguments)}", file=sys.stderr)
            elif isinstance(event, FinalEvent):
                sys.stdout.write(("" if streamed else event.text) + "\n")
        return 0
    finally:
        await agent.aclose()


def error_line(exc: BaseException) -> str:
    """One line for an error; a save conflict says how to get out of it in the REPL."""
    from ..errors import SessionConflictError

    if isinstance(exc, SessionConflictError):
        return (
            f"Error: {exc} In the chat: /reload reads the stored session again (the change "
            "shown here is dropped), or /fork <id> keeps it in a new session first."
        )
    return f"Error: {exc}"

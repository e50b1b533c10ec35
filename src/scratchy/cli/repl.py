"""The interactive chat: ``python run_agent.py`` / ``scratchy chat``.

Input comes from prompt_toolkit (history, completion, multi-line with Esc+Enter), output goes
through rich. Slash commands live in :data:`COMMANDS` (see ``cli/commands.py``); this module runs
the loop, streams turns, and handles Ctrl-C (cancel the turn) and Ctrl-D (exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
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
    ) -> None:
        self.agent = agent
        self._tools_pending = tools  # loaded just after the first prompt shows
        self.session_id = session_id
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.err = err_console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.debug = debug
        self.running = True
        self._prompt: Any = None
        self._turn: asyncio.Task[None] | None = None

    @property
    def sm(self) -> SessionManager:
        """The session manager the agent saves to."""
        assert self.agent.session_manager is not None
        return self.agent.session_manager

    # -- output helpers ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print a line of REPL output (no markup interpretation)."""
        self.console.print(text, markup=False)

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
            path = Path(os.environ.get("SCRATCHY_HISTORY_FILE") or _data_dir() / "history")
            path.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(path))
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
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
        )

    async def read_line(self) -> str | None:
        """The next input (None at Ctrl-D); Ctrl-C at the prompt clears the line."""
        if self._prompt is None:
            self._prompt = self._make_prompt()
        while True:
            try:
                return await self._prompt.prompt_async(f"[{self.session_id}] You: ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return None

    async def ask(self, question: str) -> str:
        """Ask a question at the prompt (used for tool approval)."""
        if self._prompt is None:
            self._prompt = self._make_prompt()
        try:
            return (await self._prompt.prompt_async(question)).strip().lower()
        except (KeyboardInterrupt, EOFError):
            return "n"

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
        self._warm_up()
        asyncio.get_running_loop().call_later(0.05, self.ensure_tools)
        while self.running:
            line = await self.read_line()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                try:
                    await dispatch(self, line)
                except ScratchyError as exc:
                    self.error(f"Error: {exc}")
                continue
            await self.turn(line)
        self.say("👋 Bye. Your sessions are saved.")
        return 0

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
        load = getattr(provider, "load", None)
        if load is not None:
            task = asyncio.ensure_future(load())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def turn(self, text: str) -> None:
        """Run one turn as a task that Ctrl-C cancels."""
        self.ensure_tools()
        self._turn = asyncio.ensure_future(self._stream(text))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._turn.cancel)
        try:
            await self._turn
        except asyncio.CancelledError:
            if not self._turn.cancelled():
                raise
            self.error("⏹ Cancelled. The session is saved; the partial answer was dropped.")
        except ScratchyError as exc:
            self.error(f"Error: {exc}")
        except Exception as exc:
            if self.debug:
                self.err.print_exception()
            self.error(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self._turn = None

    async def _stream(self, text: str) -> None:
        reply = ReplyStream(self.console, f"[{self.session_id}] 🤖 Assistant: ")
        loading = getattr(self.agent.provider, "loaded", True) is False
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


def build_agent(*, model: str | None, directory: str | None, approve: str) -> Agent:
    """The agent the CLI uses (tools are added by the caller)."""
    return Agent(model=model, session_manager=SessionManager(directory), tool_approval=approve)  # type: ignore[arg-type]


def run_chat(
    *,
    session_id: str = "default",
    model: str | None = None,
    directory: str | None = None,
    approve: str = "ask",
    tools: bool = True,
    debug: bool = False,
    question: str | None = None,
) -> int:
    """Run the REPL, or answer one question (argument or piped stdin) and exit."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        SessionManager.validate_id(session_id)
        agent = build_agent(model=model, directory=directory, approve=approve)
        if question is None and not sys.stdin.isatty():
            question = sys.stdin.read().strip() or None
            if question is None:
                err.print("[red]Nothing to answer: give a question or type it on stdin[/red]")
                return 2
        if question is not None:
            if tools:
                agent.load_default_tools()
            return asyncio.run(_answer_once(agent, session_id, question))
        repl = Repl(agent, session_id, err_console=err, debug=debug, tools=tools)
        agent.callbacks.on_tool_approval = repl.approve
        return asyncio.run(_run(repl))
    except ScratchyError as exc:
        if debug:
            err.print_exception()
        err.print(f"[red]Error: {escape(str(exc))}[/red]")
        return 1


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

"""The ``Agent``: a model, tools, and named sessions that save themselves after every turn.

The loop (:meth:`Agent._turn`) is: add the user's message, then ask the model; while it asks for
tools, run them and ask again; stop at a reply without tool calls. It yields one stream of events;
the callbacks are derived from it (:meth:`Agent.stream`).

Persistence goes through each :class:`Session`'s sync state: the version of the store it last
read or wrote, and a copy of the messages stored then. At the end of every turn (even a failed or
cancelled one) :meth:`Agent.save` compares memory with that copy by content: when memory extends
it, only the new messages are appended; otherwise (trim, clear, compaction, assignment, an edit
in place) the whole list is rewritten on condition that the store is still at that version.
Store I/O runs in worker threads, never on the event loop. No tool call is left without a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import messages as msgs
from . import tracing as _tracing
from .cost import call_usage
from .cost import prepare as prepare_prices
from .errors import (
    MaxTurnsExceeded,
    ModelBehaviorError,
    ScratchyError,
    SessionConflictError,
    UsageError,
)
from .events import (  # noqa: F401 - part of this module's API
    Event,
    FinalEvent,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    ToolStartEvent,
)
from .memory import attach as attach_memory
from .messages import Message
from .providers.base import ModelResponse, Provider, as_provider
from .sessions import SessionManager
from .stores.base import SessionInfo, StoredSession, utcnow, validate_session_id
from .tools import Tool, ToolRegistry, ToolResult

logger = logging.getLogger("scratchy")

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. Answer clearly and concisely. "
    "Use the tools you are given when they help."
)
Approval = Literal["ask", "allow", "deny"]


_ATOMS = (str, int, float, bool, type(None))


def _freeze(message: Message) -> Message:
    """An independent copy of a message, to compare memory with what was stored."""
    return {  # type: ignore[return-value]
        k: v if type(v) in _ATOMS else copy.deepcopy(v) for k, v in message.items()
    }


def _freeze_all(messages: list[Message]) -> list[Message]:
    """Independent copies of many messages. Strings are immutable and stay shared, which also
    keeps the comparison at save time fast (equal strings are the same objects)."""
    return [_freeze(m) for m in messages]


@dataclass(slots=True)
class _Synced:
    """What the store held when this session was last read or written (by content)."""

    version: str | None = None
    """The store's version then; None when this session was never stored or read."""
    messages: list[Message] = field(default_factory=list)
    """Frozen copies of the messages stored then, in order."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The metadata stored then, ``usage`` excepted."""


class Session:
    """One named conversation: its messages (a plain, mutable list of dicts) and its header.

    Change ``messages`` freely (append, edit in place, assign a new list): the next save stores
    exactly what it holds, or raises ``SessionConflictError`` and leaves it as it is.
    """

    def __init__(
        self,
        session_id: str,
        messages: list[Message] | None = None,
        *,
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.session_id = session_id
        self._messages: list[Message] = messages if messages is not None else []
        self.created_at: datetime = created_at or utcnow()
        self.last_activity: datetime = self.created_at
        self.metadata: dict[str, Any] = metadata if metadata is not None else {}
        self._synced = _Synced()
        self._usage_pending: dict[str, int] = {}  # tokens counted here, not yet stored
        self._call_ids: set[str] | None = None  # a cache of tool-call ids (see _unique_call_ids)
        self._valid_upto = 0  # a cache: messages[:_valid_upto] ended a good turn (_history)
        self._valid_last: Message | None = None

    @property
    def messages(self) -> list[Message]:
        """The message list; assign a new list to replace the history (saved on the next turn)."""
        return self._messages

    @messages.setter
    def messages(self, value: list[Message]) -> None:
        self._messages = value if isinstance(value, list) else list(value)
        self._call_ids = None

    @property
    def version(self) -> str | None:
        """The store's version this session was last read or saved at (None: never)."""
        return self._synced.version

    @property
    def saved_count(self) -> int:
        """How many leading messages are stored exactly as they are in memory."""
        stored = self._synced.messages
        n = len(stored)
        return n if self._messages[:n] == stored else 0

    @property
    def saved(self) -> bool:
        """True when memory holds exactly what was stored at the last read or save."""
        return (
            self._synced.version is not None
            and not self._usage_pending
            and self._messages == self._synced.messages
            and _user_metadata(self.metadata) == self._synced.metadata
        )

    @property
    def unsynced(self) -> bool:
        """True when memory differs from what was last stored (see :attr:`saved`)."""
        return not self.saved

    def _sync(
        self, info: SessionInfo, stored: list[Message] | None = None, *, appended: int = 0
    ) -> None:
        """Record a read or write: ``stored`` replaces memory (in place); else memory is what
        was written (``appended``: only its last messages are new since the previous sync)."""
        if stored is not None:
            self._messages[:] = stored
            self._call_ids = None
            self._synced.messages = _freeze_all(self._messages)
        elif appended:
            self._synced.messages.extend(_freeze(m) for m in self._messages[-appended:])
        else:
            self._synced.messages = _freeze_all(self._messages)
        self._synced.version = info.version
        self.metadata = copy.deepcopy(info.metadata)
        self._synced.metadata = _user_metadata(info.metadata)
        self.last_activity = info.updated_at

    def trim(self, keep_last: int = 50) -> None:
        """Keep the system message and about the last ``keep_last`` messages, never
        separating a tool call from its results (saved on the next turn or ``agent.save``)."""
        from .history import trim

        self.messages = trim(self._messages, keep_last)

    def clear(self, keep_system: bool = True) -> None:
        """Forget the conversation, keeping the system message unless ``keep_system=False``."""
        kept = [m for m in self._messages[:1] if keep_system and m.get("role") == "system"]
        self.messages = kept

    def __repr__(self) -> str:
        return f"Session({self.session_id!r}, {len(self._messages)} messages)"


def _user_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if k != "usage"}


@dataclass
class _Callbacks:
    on_token: Callable[[str], Any] | None = None
    on_tool_start: Callable[[str, dict[str, Any]], Any] | None = None
    on_tool_end: Callable[[str, ToolResult], Any] | None = None
    on_tool_approval: Callable[[str, dict[str, Any]], Any] | None = None
    on_final_message: Callable[[str], Any] | None = None


async def _call(callback: Callable[..., Any] | None, *args: Any) -> Any:
    if callback is None:
        return None
    result = callback(*args)
    return await result if inspect.isawaitable(result) else result


class Agent:
    """An LLM agent with tools and persistent, named sessions.

    Args:
        model: ``"provider:model"`` (``openai:gpt-4o-mini``, ``anthropic:...``, ``ollama:llama3.2``,
            ``groq:...``, ``gemini:...``, ``local:``), or None for ``$SCRATCHY_MODEL`` or the
            embedded local model.
        llm: The original Scratchy's provider name (``Agent(llm="ollama", model="llama3.2")``).
        api_key: Key for the provider (else its environment variable).
        base_url: Any OpenAI-compatible endpoint (vLLM, llama.cpp server, LM Studio).
        provider: A ready :class:`~scratchy.providers.base.Provider` (e.g. ``FakeProvider``).
        system_prompt: The first message of every new session (None for none).
        tools: Tools (``Tool`` objects or plain functions) to start with.
        session_manager: Where sessions are loaded from and saved to; default
            ``SessionManager()``.
        autosave: Save every turn when it ends (default). With ``autosave=False`` and no
            ``session_manager``, sessions stay in memory; ``agent.save(session)`` saves.
        max_iterations: Model calls allowed per turn before ``MaxTurnsExceeded``.
        context_window: Tokens the model accepts (default: the provider's ``context_window``
            when it has one). When a session's estimated size passes ``compact_at`` of it,
            older turns are summarised by the model first (see :meth:`compact`).
        tool_approval: For tools that change files or run code: ``"ask"`` calls
            ``on_tool_approval(name, args)`` (refused when there is none), ``"allow"``, ``"deny"``.
        tracing: OpenTelemetry spans of each turn (see :mod:`scratchy.tracing`): True, False,
            a ``TracerProvider``, or None: as ``SCRATCHY_TRACING`` says, else on while the
            application has a tracer provider. ``trace_content=True`` adds message contents.
        on_token, on_tool_start, on_tool_end, on_tool_approval, on_final_message: Callbacks
            (plain or async functions).
        memory: ``True`` for ``agent.memory`` (memories across sessions, see
            :mod:`scratchy.memory`); ``"auto"`` also extracts facts after each turn.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        llm: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        provider: Provider | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        session_manager: SessionManager | None = None,
        autosave: bool = True,
        max_iterations: int = 10,
        tool_approval: Approval = "ask",
        context_window: int | None = None,
        compact_at: float = 0.8,
        workspace: str | None = None,
        tracing: Any = None,
        trace_content: bool | None = None,
        memory: bool | str = False,
        on_token: Callable[[str], Any] | None = None,
        on_tool_start: Callable[[str, dict[str, Any]], Any] | None = None,
        on_tool_end: Callable[[str, ToolResult], Any] | None = None,
        on_tool_approval: Callable[[str, dict[str, Any]], Any] | None = None,
        on_final_message: Callable[[str], Any] | None = None,
        **provider_options: Any,
    ) -> None:
        if tool_approval not in ("ask", "allow", "deny"):
            raise UsageError(
                f"tool_approval must be 'ask', 'allow' or 'deny', not {tool_approval!r}"
            )
        if max_iterations < 1:
            raise UsageError("max_iterations must be at least 1")
        self._provider = as_provider(provider) if provider is not None else None
        self._provider_args = dict(
            model=model, llm=llm, api_key=api_key, base_url=base_url, **provider_options
        )
        self.system_prompt = system_prompt
        self.tools = ToolRegistry()
        for t in tools:
            self.tools.add(t)
        self.session_manager = session_manager
        if session_manager is None and autosave:
            self.session_manager = SessionManager()
        self.autosave = autosave
        self.save_input = False
        """Also store the user's input when a turn starts, so that a process killed mid-turn
        keeps it (``scratchy serve`` does). Turns of one session must then not run at once in
        several processes (the server holds the store's turn lock), or their messages would
        interleave in the store; a turn's messages are otherwise appended together."""
        self.refresh_before_turn = True
        """Pick up what other processes stored before each turn (``scratchy serve`` checks the
        session itself, under the store's turn lock)."""
        self.max_iterations = max_iterations
        self.context_window = context_window
        self.compact_at = compact_at
        self.tool_approval: Approval = tool_approval
        self.workspace = workspace
        self.tracing, self.trace_content = _tracing.check(tracing), trace_content
        self.callbacks = _Callbacks(
            on_token, on_tool_start, on_tool_end, on_tool_approval, on_final_message
        )
        self.sessions: dict[str, Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._warned_approval: set[str] = set()
        self._mcp: Any = None
        self._always_allowed: set[str] = set()
        self.memory = attach_memory(self, memory)

    # -- configuration -----------------------------------------------------------------------

    @property
    def provider(self) -> Provider:
        """The model provider, resolved on first use (vendor SDKs load only then)."""
        if self._provider is None:
            from .providers import resolve_provider

            self._provider = resolve_provider(**self._provider_args)
        return self._provider

    @provider.setter
    def provider(self, value: Provider) -> None:
        self._provider = as_provider(value)

    def _current_provider(self) -> Provider | None:
        if self._provider is None:
            with contextlib.suppress(ScratchyError):  # inherit the constructor's settings
                return self.provider
        return self._provider

    def set_model(self, model: str) -> None:
        """Switch to another ``"provider:model"`` for the following turns, keeping the
        connection settings (``api_key``, ``base_url``, options) when the provider stays the
        same; the replaced provider is closed (at once, or as soon as the event loop runs)."""
        from .providers import inherited_settings, resolve_provider

        old = self._current_provider()
        model_id, options = inherited_settings(old, model)
        self._provider = resolve_provider(model_id, **options)
        if old is not None and old is not self._provider:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(old.aclose())
                return
            task = loop.create_task(old.aclose())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def aset_model(self, model: str) -> None:
        """:meth:`set_model`, awaiting the close of the replaced provider."""
        from .providers import switch_model

        self._provider = await switch_model(self._current_provider(), model)

    def add_tool(self, tool: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (a ``Tool`` or a type-hinted function with a docstring)."""
        return self.tools.add(tool)

    def load_default_tools(self) -> list[Tool]:
        """Add the built-in file, search, shell, Python and web tools."""
        from .default_tools import default_tools

        added = [self.tools.add(t) for t in default_tools(self.workspace)]
        return added

    def add_mcp_server(self, source: Any) -> None:
        """Add the MCP servers of an ``mcp.json`` path or dict; they start on first use."""
        from .mcp import MCPManager

        if self._mcp is None:
            self._mcp = MCPManager()
        self._mcp.add(source)

    async def aclose_session(self, *session_ids: str) -> None:
        """Close sessions here: their stored journals are folded into their files."""
        if self.session_manager is not None and session_ids:
            await asyncio.to_thread(self.session_manager.close_sessions, list(session_ids))

    async def aclose(self) -> None:
        """Close the sessions used, stop MCP servers and release provider resources."""
        await self.aclose_session(*self.sessions)
        if self._mcp is not None:
            await self._mcp.aclose()
            self._mcp = None
        if self._provider is not None:
            await self._provider.aclose()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sessions ----------------------------------------------------------------------------

    def get_session(self, session_id: str = "default") -> Session:
        """The session ``session_id``: from memory, else from the store, else a new one."""
        session = self.sessions.get(session_id)
        if session is not None:
            return session
        validate_session_id(session_id)
        store = self.session_manager.store if self.session_manager else None
        return self._adopt(self._new_session(session_id, store.load(session_id) if store else None))

    async def aget_session(self, session_id: str = "default") -> Session:
        """:meth:`get_session` with the store read in a worker thread."""
        session = self.sessions.get(session_id)
        if session is not None:
            return session
        validate_session_id(session_id)
        stored = None
        if self.session_manager is not None:
            stored = await self.session_manager.store.aio.load(session_id)
        return self._adopt(self._new_session(session_id, stored))

    def _new_session(self, session_id: str, stored: StoredSession | None) -> Session:
        start = [msgs.system(self.system_prompt)] if self.system_prompt else []
        if stored is None:
            return Session(session_id, start)
        session = Session(session_id, [], created_at=stored.info.created_at)
        session._sync(stored.info, stored.messages)
        if not stored.messages:  # created empty (``/new``): starts like a new session
            session.messages.extend(start)
        return session

    def _adopt(self, session: Session) -> Session:
        return self.sessions.setdefault(session.session_id, session)

    def reload(self, session_id: str = "default") -> Session:
        """Forget the unsaved changes of ``session_id`` and read it again from the store
        (the way out of a ``SessionConflictError``). The same ``Session`` object is kept."""
        session = self.get_session(session_id)
        if self.session_manager is None:
            return session
        stored = self.session_manager.store.load(session_id)
        session._usage_pending = {}
        if stored is None:
            session._synced = _Synced()
            session.messages = [msgs.system(self.system_prompt)] if self.system_prompt else []
        else:
            session._sync(stored.info, stored.messages)
        return session

    def save(self, session: Session, *, overwrite: bool = False) -> None:
        """Store what changed in ``session`` since it was last read or stored.

        Memory that extends what was stored is appended (after whatever other processes added
        meanwhile, which then appears in memory too). Anything else (trim, clear, compaction,
        assignment, an edit in place) is rewritten on condition that the store still holds the
        version this session came from, or extends it. Otherwise ``SessionConflictError``, and
        memory stays as it is: every later save fails the same way until :meth:`reload`, or
        ``save(session, overwrite=True)`` which replaces what is stored with memory.
        """
        if self.session_manager is None:
            return
        store = self.session_manager.store
        sid, current = session.session_id, session.messages
        synced = session._synced
        n = len(synced.messages)
        usage = dict(session._usage_pending) or None
        meta = _user_metadata(session.metadata)
        meta_arg = meta if meta != synced.metadata or synced.version is None else None
        if not overwrite and current[:n] == synced.messages and len(current) >= n:
            new = current[n:]
            if synced.version is not None and not new and not usage and meta_arg is None:
                return
            skip = 0
            if synced.version is None and new and new[0].get("role") == "system":
                try:  # our system prompt goes first only if nobody else started the session
                    info = store.append(
                        sid, new, expected_version="", metadata=meta_arg, usage=usage
                    )
                except SessionConflictError:
                    skip = 1
                    info = store.append(sid, new[1:], metadata=meta_arg, usage=usage)
            else:
                info = store.append(sid, new, metadata=meta_arg, usage=usage)
            if n and info.message_count == len(new):  # deleted meanwhile: store it all again
                info = store.replace(sid, current, expected_version=info.version)
            session._usage_pending = {}
            if skip or info.message_count != len(current):  # other writers added messages
                stored = store.load(sid)
                if stored is not None:
                    session._sync(stored.info, stored.messages)
                    return
            session._sync(info, appended=len(new))
            return
        info = store.replace(
            sid,
            current,
            expected_version=synced.version or "",
            force=overwrite,
            metadata=meta,
            usage=usage,
        )
        session._usage_pending = {}
        session._sync(info)

    async def asave(self, session: Session, *, overwrite: bool = False) -> None:
        """:meth:`save` in a worker thread (the event loop never waits on store I/O); saves of
        one session run one at a time (a cancelled turn's save waits for one still running)."""
        async with session.__dict__.setdefault("_save_lock", asyncio.Lock()):
            await asyncio.to_thread(self.save, session, overwrite=overwrite)

    def refresh(self, session: Session) -> None:
        """Pick up what other processes stored, unless this history has unsaved changes."""
        if self.session_manager is None or session.version is None:
            return
        store = self.session_manager.store
        info = store.info(session.session_id)
        if info is not None and info.version != session.version and session.saved:
            stored = store.load(session.session_id)
            if stored is not None:
                session._sync(stored.info, stored.messages)

    async def compact(self, session_id: str = "default", *, keep_last: int = 10) -> int:
        """Summarise older turns with the model to free context; returns messages folded.

        The originals stay in the session, inside the summary message (``"compacted"``), so
        :func:`scratchy.history.uncompact` restores them and exports can include them. When
        the rewrite cannot be saved (``SessionConflictError``), memory is left as it was.
        """
        from .history import compact, compaction_split, transcript
        from .providers.base import complete

        session = await self.aget_session(session_id)
        start, end = compaction_split(session.messages, keep_last)
        if end - start < 2:
            return 0
        prompt = [
            msgs.system(
                "Summarise the conversation below for your own later use: keep facts, "
                "decisions, names, file paths, open questions and the user's preferences. "
                "Be concise; write plain sentences."
            ),
            msgs.user(transcript(session.messages[start:end])),
        ]
        response = await complete(self.provider, prompt)
        self._account(session, response)
        await self.arewrite(
            session, compact(session.messages, msgs.text_of(response.message), start, end)
        )
        return end - start

    async def arewrite(self, session: Session, messages: list[Message]) -> None:
        """Replace the session's messages and save; when the save fails, memory is put back
        as it was and the error is raised (nothing half-done)."""
        before = session.messages
        session.messages = messages
        if not self.autosave or self.session_manager is None:
            return
        try:
            await self.asave(session)
        except BaseException:
            session.messages = before
            raise

    def _context_window(self) -> int | None:
        if self.context_window is not None:
            return self.context_window
        return self.provider.context_window

    async def _maybe_compact(self, session: Session) -> None:
        from .history import estimate_tokens

        window = self._context_window()
        if window and estimate_tokens(session.messages) > self.compact_at * window:
            await self.compact(session.session_id, keep_last=min(10, len(session.messages) // 2))

    # -- the loop ----------------------------------------------------------------------------

    async def chat(self, text: str, session_id: str = "default") -> str:
        """Send ``text`` in ``session_id`` and return the final reply."""
        reply = ""
        async for event in self.stream(text, session_id=session_id):
            if isinstance(event, FinalEvent):
                reply = event.text
        return reply

    async def stream(self, text: str, session_id: str = "default") -> AsyncIterator[Event]:
        """Run one turn, yielding text deltas, tool calls and results, and the final reply.

        Turns on one session run one at a time in this agent; the callbacks are called from
        the same events, just before each is yielded."""
        async with self._turn_lock(session_id):
            turn = _tracing.trace_turn(self, text, session_id, self._turn(text, session_id))
            async for event in turn:
                await self._emit(event)
                yield event
            if self.memory:  # Agent(memory="auto"): durable facts of this turn
                await self.memory.end_turn(self.sessions[session_id])

    async def _turn(self, text: str, session_id: str) -> AsyncIterator[Event]:
        session = await self.aget_session(session_id)
        if self.session_manager is not None and self.refresh_before_turn:
            await asyncio.to_thread(self.refresh, session)
        provider = self.provider
        await provider.load()  # idempotent: warms a local model, asks a server its window
        prepare_prices(provider)  # loads the price data while the model answers
        await self._maybe_compact(session)
        session.messages.append(msgs.user(text))
        if self.memory:  # provenance for the tools; a new session's relevant memories
            await self.memory.start_turn(session)
        if self.autosave and self.save_input:  # stored before the model runs: a crash keeps it
            await asyncio.shield(self.asave(session))
        try:
            tools = await self._tools()
            schemas = tools.schemas() if provider.supports_tools else []
            for _ in range(self.max_iterations):
                response, streamed = None, False
                async for item in _tracing.trace_chat(provider, self._history(session), schemas):
                    if isinstance(item, TextDelta):
                        streamed = True
                        yield item
                    else:
                        response = item
                if response is None:
                    raise ModelBehaviorError(
                        f"{provider.name} ended without a response; try again",
                        provider=provider.name,
                    )
                text = msgs.text_of(response.message)
                if not streamed and text:  # a provider that does not stream: one piece
                    yield TextDelta(text)
                self._account(session, response)
                reply = _unique_call_ids(session, response.message)
                session.messages.append(reply)
                calls = reply.get("tool_calls") or []
                if not calls:
                    session._valid_upto, session._valid_last = len(session.messages), reply
                    yield FinalEvent(msgs.text_of(reply))
                    return
                for call in calls:
                    run = self._run_tool(session, tools, call)
                    async for event in _tracing.trace_tool(run, call, tools):
                        yield event
            raise MaxTurnsExceeded(
                f"No final answer after {self.max_iterations} model calls; raise "
                "Agent(max_iterations=...) or ask for something smaller"
            )
        finally:
            _close_open_calls(session.messages)
            session.last_activity = utcnow()
            if self.autosave:
                # Shielded: a cancelled turn (Ctrl-C, a client gone) is still saved.
                await asyncio.shield(self.asave(session))

    async def _emit(self, event: Event) -> None:
        cb = self.callbacks
        if isinstance(event, TextDelta):
            await _call(cb.on_token, event.text)
        elif isinstance(event, ToolStartEvent):
            await _call(cb.on_tool_start, event.name, event.args)
        elif isinstance(event, ToolResultEvent):
            await _call(cb.on_tool_end, event.name, ToolResult(event.content, event.is_error))
        elif isinstance(event, FinalEvent):
            await _call(cb.on_final_message, event.text)

    @contextlib.asynccontextmanager
    async def _turn_lock(self, session_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            yield

    async def _tools(self) -> ToolRegistry:
        if self._mcp is None:
            return self.tools
        registry = ToolRegistry(self.tools)
        for t in await self._mcp.tools():
            registry.add(t)
        return registry

    def _history(self, session: Session) -> list[Message]:
        """The messages to send: checked from where the last good turn ended, and repaired
        (orphan results dropped, unanswered calls closed) when something is wrong."""
        from .history import repair, validate

        messages = session.messages
        start = session._valid_upto
        if not (0 < start <= len(messages) and messages[start - 1] is session._valid_last):
            start = 0
        sent = repair(messages) if validate(messages, start) else messages
        return self.memory.context(session, sent) if self.memory else sent

    def _account(self, session: Session, response: ModelResponse) -> None:
        """Count a model call's tokens and cost (:mod:`scratchy.cost`): shown at once, added
        to the stored totals on save."""
        usage = dict(session.metadata.get("usage") or {})
        for key, value in call_usage(self.provider, response).items():
            usage[key] = usage.get(key, 0) + value
            session._usage_pending[key] = session._usage_pending.get(key, 0) + value
        session.metadata["usage"] = usage

    async def _run_tool(
        self, session: Session, tools: ToolRegistry, call: dict[str, Any]
    ) -> AsyncIterator[Event]:
        fn = call.get("function", {})
        name, arguments = fn.get("name", ""), fn.get("arguments") or "{}"
        yield ToolCallEvent(call["id"], name, arguments)
        try:
            args = json.loads(arguments)
        except ValueError:
            args = {}
        tool = tools.get(name)
        if tool is None:
            known = ", ".join(t.name for t in tools) or "none"
            result = ToolResult(f"Error: no tool named '{name}'. Available tools: {known}", True)
        elif tool.needs_approval and not await self._approved(name, args):
            result = ToolResult(
                f"Error: the user did not approve running '{name}'. Do not retry it; "
                "explain what you wanted to do instead.",
                True,
            )
        else:
            yield ToolStartEvent(call["id"], name, args)
            result = await tool.run(arguments)
        session.messages.append(msgs.tool_result(call["id"], result.content, name))
        yield ToolResultEvent(call["id"], name, result.content, result.is_error, result.exception)

    async def _approved(self, name: str, args: dict[str, Any]) -> bool:
        if self.tool_approval != "ask" or name in self._always_allowed:
            return self.tool_approval == "allow" or name in self._always_allowed
        if self.callbacks.on_tool_approval is None and name not in self._warned_approval:
            self._warned_approval.add(name)
            logger.warning(
                "Tool '%s' needs approval and nothing can approve it, so it was refused: pass "
                'Agent(tool_approval="allow") to run such tools, or on_tool_approval=... to '
                "decide per call",
                name,
            )
        answer = await _call(self.callbacks.on_tool_approval, name, args)
        if answer == "always":
            self._always_allowed.add(name)
            return True
        return bool(answer)


def _unique_call_ids(session: Session, reply: Message) -> Message:
    """Give tool calls ids unique in the session (small local models reuse ``call_0``)."""
    if not reply.get("tool_calls"):
        return reply
    reply = copy.deepcopy(reply)  # never alias a provider's objects (a script may reuse them)
    calls = reply["tool_calls"]
    if session._call_ids is None:
        session._call_ids = {
            c.get("id") for m in session.messages for c in m.get("tool_calls") or []
        }
    for call in calls:
        if not call.get("id") or call["id"] in session._call_ids:
            call["id"] = f"call_{uuid.uuid4().hex[:24]}"
        session._call_ids.add(call["id"])
    return reply


def _close_open_calls(messages: list[Message]) -> None:
    """Give every tool call of the last assistant message a result (a cancelled turn)."""
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if msg.get("role") == "assistant":
            answered = {m.get("tool_call_id") for m in messages[i + 1 :]}
            for call in msg.get("tool_calls") or []:
                if call.get("id") not in answered:
                    messages.append(
                        msgs.tool_result(
                            call["id"],
                            "Error: cancelled before this tool ran",
                            call.get("function", {}).get("name"),
                        )
                    )
            return
        if msg.get("role") != "tool":
            return

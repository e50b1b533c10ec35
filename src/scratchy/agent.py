"""The ``Agent``: a model, tools, and named sessions that save themselves after every turn.

The loop (:meth:`Agent.stream`) is: add the user's message, then ask the model; while it asks for
tools, run them and ask again; stop at a reply without tool calls. Every turn's new messages are
appended to the session store under its cross-process lock when the turn ends, even when it fails
or is cancelled, and no assistant tool call is ever left without its tool result.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from . import messages as msgs
from .errors import MaxTurnsExceeded, ModelBehaviorError, SessionConflictError, UsageError
from .messages import Message
from .providers.base import ModelResponse, Provider, TextDelta
from .sessions import SessionManager
from .stores.base import utcnow, validate_session_id
from .tools import Tool, ToolRegistry, ToolResult

logger = logging.getLogger("scratchy")

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. Answer clearly and concisely. "
    "Use the tools you are given when they help."
)
Approval = Literal["ask", "allow", "deny"]


@dataclass(slots=True)
class ToolCallEvent:
    """The model asked for a tool."""

    call_id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolResultEvent:
    """A tool finished (``is_error`` when it failed or was refused)."""

    call_id: str
    name: str
    content: str
    is_error: bool


@dataclass(slots=True)
class FinalEvent:
    """The turn ended with this reply text."""

    text: str


Event = TextDelta | ToolCallEvent | ToolResultEvent | FinalEvent


class Session:
    """One named conversation: its messages (a plain, mutable list of dicts) and its header."""

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
        self._synced = 0  # leading messages known to be stored, in this order
        self._synced_last: Message | None = None
        self._version = ""  # the store's version token when we last synced
        self._replaced = False
        self._call_ids: set[str] | None = None
        self._base_len = 0  # length of the list last assigned to ``messages``
        self._usage_pending: dict[str, int] = {}  # tokens counted here, not yet stored
        self._valid_upto = 0  # messages[:_valid_upto] ended a good turn (see Agent._history)
        self._valid_last: Message | None = None

    @property
    def messages(self) -> list[Message]:
        """The message list; assign a new list to replace the history (saved on the next turn)."""
        return self._messages

    @messages.setter
    def messages(self, value: list[Message]) -> None:
        self._messages = value if isinstance(value, list) else list(value)
        self._replaced = True
        self._base_len = len(self._messages)
        self._call_ids = None

    def _reload(self, messages: list[Message]) -> None:
        self._messages = messages
        self._call_ids = None

    def _mark_synced(self, version: str) -> None:
        self._synced = len(self._messages)
        self._synced_last = self._messages[-1] if self._messages else None
        self._version = version
        self._replaced = False

    @property
    def saved_count(self) -> int:
        """How many leading messages are known to be stored as they are in memory."""
        return self._synced if self._prefix_intact() and not self._replaced else 0

    @property
    def unsynced(self) -> bool:
        """True when the in-memory history differs from what was last stored (or was replaced)."""
        return self._replaced or not self._prefix_intact() or len(self._messages) != self._synced

    def _prefix_intact(self) -> bool:
        if self._synced == 0:
            return True
        return (
            len(self._messages) >= self._synced
            and self._messages[self._synced - 1] is self._synced_last
        )

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
        on_token, on_tool_start, on_tool_end, on_tool_approval, on_final_message: Callbacks
            (plain or async functions).
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
        self._provider = provider
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
        self.max_iterations = max_iterations
        self.context_window = context_window
        self.compact_at = compact_at
        self.tool_approval: Approval = tool_approval
        self.workspace = workspace
        self.callbacks = _Callbacks(
            on_token, on_tool_start, on_tool_end, on_tool_approval, on_final_message
        )
        self.sessions: dict[str, Session] = {}
        self._mcp: Any = None
        self._always_allowed: set[str] = set()

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
        self._provider = value

    def set_model(self, model: str) -> None:
        """Switch to another ``"provider:model"`` for the following turns."""
        from .providers import resolve_provider

        self._provider = resolve_provider(model)

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

    async def aclose(self) -> None:
        """Stop MCP servers and release provider resources."""
        if self._mcp is not None:
            await self._mcp.aclose()
            self._mcp = None
        close = getattr(self._provider, "aclose", None)
        if close is not None:
            await _call(close)

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
        stored = self.session_manager.store.load(session_id) if self.session_manager else None
        start = [msgs.system(self.system_prompt)] if self.system_prompt else []
        if stored is not None:
            session = Session(
                session_id,
                stored.messages,
                created_at=stored.info.created_at,
                metadata=copy.deepcopy(stored.info.metadata),
            )
            session.last_activity = stored.info.updated_at
            session._mark_synced(stored.info.version)
            if not stored.messages:  # created empty (``/new``): starts like a new session
                session._messages.extend(start)
        else:
            session = Session(session_id, start)
        self.sessions[session_id] = session
        return session

    def save(self, session: Session) -> None:
        """Store what changed in ``session`` since it was last stored (append or rewrite)."""
        if self.session_manager is None or not session.unsynced:
            return
        store = self.session_manager.store
        sid = session.session_id
        metadata = self._metadata_to_store(session)
        if (
            session._replaced
            or not session._prefix_intact()
            or (session._synced and store.info(sid) is None)
        ):  # rewritten, or deleted meanwhile
            try:
                info = store.replace(sid, session.messages, metadata=metadata)
            except SessionConflictError:
                # Another process added messages since the list assigned here was read. When
                # that list is what is stored (the guide's ``session.messages = loaded``),
                # this turn's messages go after theirs; a real divergence is reported.
                base = session._base_len if session._replaced else -1
                stored = store.load(sid)
                if (
                    stored is None
                    or base < session._synced  # trimmed or cleared here: a real divergence
                    or stored.messages[:base] != session.messages[:base]
                ):
                    raise
                store.append(sid, session.messages[base:], metadata=metadata)
                stored = store.load(sid)
                assert stored is not None
                session._reload(stored.messages)
                info = stored.info
        else:
            new = session.messages[session._synced :]
            if not session._synced and new and new[0].get("role") == "system":
                try:  # our system prompt goes first only if nobody else started the session
                    info = store.append(sid, new, expected_count=0, metadata=metadata)
                except SessionConflictError:
                    info = store.append(sid, new[1:], metadata=metadata)
            else:
                info = store.append(sid, new, metadata=metadata)
            if info.message_count != len(session.messages):  # another process added messages
                stored = store.load(sid)
                if stored is not None:
                    session._reload(stored.messages)
                    info = stored.info
        session._mark_synced(info.version)

    def refresh(self, session: Session) -> None:
        """Pick up messages another process stored, unless this history was changed here."""
        if self.session_manager is None or session.unsynced or not session._version:
            return
        info = self.session_manager.store.info(session.session_id)
        if info is not None and info.version != session._version:
            stored = self.session_manager.store.load(session.session_id)
            if stored is not None:
                session._reload(stored.messages)
                session.metadata.update(copy.deepcopy(stored.info.metadata))
                session._mark_synced(stored.info.version)

    async def compact(self, session_id: str = "default", *, keep_last: int = 10) -> int:
        """Summarise older turns with the model to free context; returns messages folded.

        The originals stay in the session, inside the summary message (``"compacted"``), so
        :func:`scratchy.history.uncompact` restores them and exports can include them.
        """
        from .history import compact, compaction_split, transcript
        from .providers.base import complete

        session = self.get_session(session_id)
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
        session.messages = compact(session.messages, msgs.text_of(response.message), start, end)
        self.save(session)
        return end - start

    def _context_window(self) -> int | None:
        if self.context_window is not None:
            return self.context_window
        window = getattr(self._provider, "context_window", None)
        return window if isinstance(window, int) else None

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
        """Run one turn, yielding text deltas, tool calls, tool results and the final reply."""
        session = self.get_session(session_id)
        self.refresh(session)
        await self._maybe_compact(session)
        session.messages.append(msgs.user(text))
        try:
            tools = await self._tools()
            for _ in range(self.max_iterations):
                response = None
                async for item in self.provider.stream(self._history(session), tools.schemas()):
                    if isinstance(item, TextDelta):
                        await _call(self.callbacks.on_token, item.text)
                        yield item
                    else:
                        response = item
                if response is None:
                    raise ModelBehaviorError(
                        f"{self.provider.name} ended without a response; try again",
                        provider=self.provider.name,
                    )
                self._account(session, response)
                reply = _unique_call_ids(session, response.message)
                session.messages.append(reply)
                calls = reply.get("tool_calls") or []
                if not calls:
                    session._valid_upto, session._valid_last = len(session.messages), reply
                    final = msgs.text_of(reply)
                    await _call(self.callbacks.on_final_message, final)
                    yield FinalEvent(final)
                    return
                for call in calls:
                    async for event in self._run_tool(session, tools, call):
                        yield event
            raise MaxTurnsExceeded(
                f"No final answer after {self.max_iterations} model calls; raise "
                "Agent(max_iterations=...) or ask for something smaller"
            )
        finally:
            _close_open_calls(session.messages)
            session.last_activity = utcnow()
            if self.autosave:
                self.save(session)

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
        if not validate(messages, start):
            return messages
        return repair(messages)

    def _account(self, session: Session, response: ModelResponse) -> None:
        if response.usage is None:
            return
        usage = dict(session.metadata.get("usage") or {})  # a copy: never alias a cached one
        for key, value in (
            ("input_tokens", response.usage.input_tokens),
            ("output_tokens", response.usage.output_tokens),
        ):
            usage[key] = usage.get(key, 0) + value
            session._usage_pending[key] = session._usage_pending.get(key, 0) + value
        session.metadata["usage"] = usage

    def _metadata_to_store(self, session: Session) -> dict[str, Any]:
        """The session's metadata, with this process's new token counts added to the stored
        totals (so that several processes sharing a session all count)."""
        pending, session._usage_pending = session._usage_pending, {}
        if pending and self.session_manager is not None:
            current = self.session_manager.store.info(session.session_id)
            stored = (current.metadata.get("usage") if current is not None else None) or {}
            session.metadata["usage"] = {
                k: int(stored.get(k, 0)) + pending.get(k, 0)
                for k in ("input_tokens", "output_tokens")
            }
        return session.metadata

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
            await _call(self.callbacks.on_tool_start, name, args)
            result = await tool.run(arguments)
            await _call(self.callbacks.on_tool_end, name, result)
        session.messages.append(msgs.tool_result(call["id"], result.content, name))
        yield ToolResultEvent(call["id"], name, result.content, result.is_error)

    async def _approved(self, name: str, args: dict[str, Any]) -> bool:
        if self.tool_approval != "ask" or name in self._always_allowed:
            return self.tool_approval == "allow" or name in self._always_allowed
        answer = await _call(self.callbacks.on_tool_approval, name, args)
        if answer == "always":
            self._always_allowed.add(name)
            return True
        return bool(answer)


def _unique_call_ids(session: Session, reply: Message) -> Message:
    """Give tool calls ids unique in the session (small local models reuse ``call_0``)."""
    calls = reply.get("tool_calls")
    if not calls:
        return reply
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

"""What the routes call: the agents, the owners' stores, turn locks and idempotent turns.

Routes stay thin; everything here calls the same :class:`~scratchy.agent.Agent` and store methods
the REPL calls. One :class:`Runtime` lives in each worker process.

Turns
    A turn runs in a background task that feeds an event queue. A JSON request waits for the
    task; an SSE request reads the queue. A client that goes away cancels neither: the turn runs
    to the end and is saved, and the lock is released when it ends.

One turn at a time per session
    ``store.turn_lock`` (a lock that lives with the store: a file lock, a PostgreSQL advisory
    lock, a Redis lock with a lease; across workers and machines). A busy session answers 409
    ``session_busy`` (``Retry-After``), or the request waits up to ``busy_wait`` seconds with
    ``"if_busy": "wait"`` (waiting in the store, where waiters queue).

Cancel
    ``POST .../turns/cancel`` stops the session's running turn wherever it runs: this worker's
    own turn directly, any other's through the store's cancel channel (:mod:`.cancel`). The
    cancelled turn ends as the REPL's Ctrl-C ends one: the user's input is kept, every tool call
    has a result, the partial reply is dropped, and the session is saved.

Idempotency
    The first result of a turn sent with ``Idempotency-Key`` is kept in the session's own
    metadata (``metadata["_server"]["idempotency"]``, the last :data:`IDEMPOTENCY_KEEP` keys),
    written in the same store write as the turn's messages. A retry takes the lock, finds the
    record and answers it again without running the model (header ``Idempotent-Replayed: true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..agent import Agent, FinalEvent, ToolCallEvent, ToolResultEvent, ToolStartEvent
from ..cost import Cost
from ..errors import (
    ConfigError,
    SessionNotFoundError,
    StoreUnavailableError,
    ToolError,
    UsageError,
)
from ..messages import Message
from ..providers.base import TextDelta
from ..sessions import SessionManager
from ..stores.base import SessionInfo, validate_session_id
from ..tools import ToolRegistry
from .auth import Caller, Keyring, owner_store
from .cancel import signals_for
from .errors import ApiError, SessionBusyError, error_for, not_found
from .metrics import Metrics

SERVER_KEY = "_server"
"""Metadata key of the server's own bookkeeping (hidden from API answers)."""
IDEMPOTENCY_KEEP = 20
SESSION_CACHE = 256
"""Sessions each worker keeps in memory per owner (checked against the store's version)."""
HIDDEN_METADATA = ("usage", SERVER_KEY)


async def store_call(store: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``store.aio.NAME(...)``: the store method in a worker thread (never blocks the loop)."""
    return await getattr(store.aio, name)(*args, **kwargs)


# --- store operations ------------------------------------------------------------------------


def list_page(store: Any, limit: int, cursor: str | None) -> tuple[list[SessionInfo], str | None]:
    """One page of headers, newest activity first, and the cursor of the next page."""
    try:
        page = store.list_page(limit=limit, cursor=cursor)
    except UsageError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return list(page.items), page.next_cursor


def header(info: SessionInfo) -> dict[str, Any]:
    """The JSON header of a session."""
    usage = info.metadata.get("usage") or {}
    return {
        "id": info.id,
        "title": info.title,
        "created_at": _iso(info.created_at),
        "updated_at": _iso(info.updated_at),
        "message_count": info.message_count,
        "usage": {
            "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)),
        },
        "cost": Cost.of(usage).as_dict(),  # see scratchy.cost
        "metadata": user_metadata(info.metadata),
    }


def user_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata without the keys the agent and the server keep for themselves."""
    return {k: v for k, v in metadata.items() if k not in HIDDEN_METADATA}


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")


# --- turn locks ----------------------------------------------------------------------------------


class TurnLock:
    """The store's turn lock of one session (``store.turn_lock``)."""

    def __init__(self, store: Any, session_id: str, then: Callable[[], Any] | None = None):
        self._store = store
        self._sid = session_id
        self._cm: Any = None
        self._then = then
        self.then_result: Any = None
        """What ``then`` returned, called in the same thread once the lock was had (one
        thread hop less per turn)."""

    def try_acquire(self, timeout: float) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (blocking: run it in a thread)."""
        cm = self._store.turn_lock(self._sid, timeout=timeout)
        try:
            cm.__enter__()
        except SessionBusyError:
            return False
        self._cm = cm
        if self._then is not None:
            try:
                self.then_result = self._then()
            except BaseException:
                self.release_now()
                raise
        return True

    def release_now(self) -> None:
        """Let the next turn in (blocking)."""
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)

    async def release(self) -> None:
        """Let the next turn in."""
        if self._cm is not None:
            await asyncio.to_thread(self.release_now)


async def acquire_turn_lock(
    store: Any, session_id: str, *, wait: float, then: Callable[[], Any] | None = None
) -> TurnLock:
    """The session's turn lock, held: tried at once, then (with ``wait``) waited for in the
    store (waiters queue there), else ``SessionBusyError``. A request cancelled while it waits
    releases the lock as soon as its thread gets it. ``then`` runs in the lock's thread once it
    is held (its result: ``lock.then_result``)."""
    lock = TurnLock(store, session_id, then)
    loop = asyncio.get_running_loop()
    for timeout in (0.0, wait) if wait > 0 else (0.0,):
        attempt = loop.run_in_executor(None, lock.try_acquire, timeout)
        try:
            if await asyncio.shield(attempt):
                return lock
        except asyncio.CancelledError:
            attempt.add_done_callback(
                lambda f: (
                    f.cancelled() or f.exception() or loop.run_in_executor(None, lock.release_now)
                )
            )
            raise
    raise SessionBusyError(f"Session '{session_id}' is running a turn", session_id=session_id)


# --- turns ---------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One running (or replayed) turn: its events as they come, then its result."""

    session_id: str | None
    events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)
    result: dict[str, Any] | None = None
    error: ApiError | None = None
    replayed: bool = False
    task: asyncio.Task[None] | None = None
    id: str = field(default_factory=lambda: f"turn_{random.getrandbits(96):024x}")
    cancel_requested: bool = False
    running: bool = False
    """True while the agent runs the turn (the part a cancel interrupts)."""

    def put(self, kind: str, data: dict[str, Any]) -> None:
        self.events.put_nowait((kind, data))

    def cancel(self) -> bool:
        """Stop the agent's part of the turn; False when it has already ended."""
        if self.task is None or self.task.done() or self.result is not None:
            return False
        if not self.cancel_requested:
            self.cancel_requested = True
            if self.running:
                self.task.cancel()
        return True

    async def wait(self) -> dict[str, Any]:
        """The result; a client that goes away does not cancel the turn (it is shielded)."""
        if self.task is not None:
            await asyncio.shield(self.task)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def stream(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The events, ending after ``final`` or ``error``."""
        while True:
            item = await self.events.get()
            if item is None:
                return
            yield item


def fingerprint(*parts: Any) -> str:
    """A short digest of a request's body (a reused Idempotency-Key must send the same)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class AgentSource:
    """Makes the agents: from an ``Agent`` (copied per owner) or a zero-argument factory."""

    def __init__(self, agent_or_factory: Agent | Callable[[], Agent] | None, model: str | None):
        self._template: Agent | None = None
        self._factory: Callable[[], Agent] | None = None
        if agent_or_factory is None:
            self._factory = lambda: Agent(model=model, autosave=False)
        elif isinstance(agent_or_factory, Agent):
            self._template = agent_or_factory
        elif callable(agent_or_factory):
            self._factory = agent_or_factory
        else:
            raise ConfigError(
                f"create_app() needs an Agent or a function returning one, not "
                f"{type(agent_or_factory).__name__}"
            )
        self.model = model

    def _new(self) -> Agent:
        if self._template is not None:
            agent = copy.copy(self._template)
            agent.sessions = {}
            agent.callbacks = copy.copy(self._template.callbacks)
            agent._always_allowed = set()
            return agent
        assert self._factory is not None
        agent = self._factory()
        if not isinstance(agent, Agent):
            raise ConfigError(f"the agent factory returned {type(agent).__name__}, not an Agent")
        if self.model and self._factory is not None and agent._provider is None:
            agent._provider_args["model"] = self.model
        return agent

    def default_store(self) -> Any:
        """The store of the given agent, if it has one."""
        agent = self._template
        return agent.session_manager.store if agent and agent.session_manager else None

    def make(self, store: Any, approve: Callable[[str], bool] | None) -> Agent:
        """A new agent saving to ``store`` (None: stateless, nothing saved)."""
        agent = self._new()
        agent.session_manager = SessionManager(store=store) if store is not None else None
        if agent.memory is not None:  # this owner's memories and tools (none when stateless)
            agent.memory = agent.memory.bind(agent)
        agent.autosave = store is not None  # saved by ``asave``: off the event loop
        agent.save_input = True  # a worker killed mid-turn keeps the input (turns are locked)
        agent.refresh_before_turn = False  # Runtime._session checks it, under the turn lock
        if approve is None:
            agent.tool_approval = "allow"
        else:
            agent.tool_approval = "ask"  # MCP tools, added later: refused by this callback
            agent.callbacks.on_tool_approval = lambda name, args: approve(name)
            agent.tools = _server_tools(agent.tools, approve)
        return agent


def refusal(name: str) -> str:
    """What the model (and the turn's ``tool_result`` event) is told about a refused tool."""
    return (
        f"this server does not allow '{name}' to run: it needs approval and nobody is there "
        f"to approve it (the operator can allow it with --allow-tool {name}). Do not retry "
        "it; say what you wanted to do instead."
    )


def _server_tools(tools: ToolRegistry, approve: Callable[[str], bool]) -> ToolRegistry:
    """A copy of the registry where each tool that needs approval and is not allowed answers
    :func:`refusal` instead of running."""
    registry = ToolRegistry()
    for tool in tools:
        if tool.needs_approval and not approve(tool.name):
            message = refusal(tool.name)

            async def refuse(_message: str = message, **_: Any) -> str:
                raise ToolError(_message)

            tool = dataclasses.replace(tool, fn=refuse, needs_approval=False, args_model=None)
        registry.add(tool)
    return registry


class Runtime:
    """The state of one worker: base store, keys, agents per owner, running turns, metrics."""

    def __init__(
        self,
        agents: AgentSource,
        store: Any,
        keys: Keyring,
        *,
        allow_tools: tuple[str, ...] = (),
        allow_all_tools: bool = False,
        busy_wait: float = 30.0,
    ) -> None:
        self.agents = agents
        self.store = store
        self.keys = keys
        self.busy_wait = busy_wait
        self.metrics = Metrics()
        allowed = frozenset(allow_tools)
        self._approve: Callable[[str], bool] | None = (
            None if allow_all_tools else (lambda name: name in allowed)
        )
        self._owner_agents: dict[str | None, Agent] = {}
        self._stateless: Agent | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.signals = signals_for(store)
        self._reading: Any = None  # reading.MessageCache, made at the first read
        self._running: dict[str, Turn] = {}  # this worker's turns, by their signal key

    # -- owners ------------------------------------------------------------------------------

    def store_for(self, caller: Caller) -> Any:
        """The caller's view of the store (admins and single-owner servers: all of it)."""
        return self.store if caller.is_admin else owner_store(self.store, caller.owner)

    def agent_for(self, caller: Caller) -> Agent:
        """The agent saving to the caller's store (one per owner per worker)."""
        key = None if caller.is_admin else caller.owner
        agent = self._owner_agents.get(key)
        if agent is None:
            agent = self.agents.make(self.store_for(caller), self._approve)
            self._owner_agents[key] = agent
        return agent

    def stateless_agent(self) -> Agent:
        """The agent of requests without a session (nothing is stored)."""
        if self._stateless is None:
            self._stateless = self.agents.make(None, self._approve)
        return self._stateless

    @property
    def model_name(self) -> str:
        """The model the agents run, as ``/v1/models`` names it."""
        agent = self.stateless_agent()
        try:
            provider = agent.provider
        except Exception:  # noqa: BLE001 - a provider that cannot start: name the setting
            return self.agents.model or "scratchy"
        return f"{provider.name}:{getattr(provider, 'model', '') or ''}".rstrip(":")

    # -- session routes ----------------------------------------------------------------------

    async def header(self, caller: Caller, session_id: str) -> SessionInfo:
        """The header of one of the caller's sessions (404 when it is not theirs)."""
        info = await store_call(self.store_for(caller), "info", validate_session_id(session_id))
        if info is None:
            raise SessionNotFoundError(f"No session '{session_id}'")
        return info

    async def read_messages(
        self, caller: Caller, session_id: str
    ) -> tuple[SessionInfo, list[Message]] | None:
        """A session's header and messages, through this worker's cache of long sessions."""
        if self._reading is None:
            from .reading import MessageCache

            self._reading = MessageCache()
        owner = None if caller.is_admin else caller.owner
        return await self._reading.read(self.store_for(caller), owner, session_id)

    @contextlib.asynccontextmanager
    async def session_lock(self, caller: Caller, session_id: str) -> AsyncIterator[None]:
        """Hold the session's turn lock while changing its header or moving it."""
        lock = await acquire_turn_lock(self.store_for(caller), session_id, wait=0)
        try:
            yield
        finally:
            await lock.release()

    # -- turns -------------------------------------------------------------------------------

    async def start_turn(
        self,
        caller: Caller,
        session_id: str,
        text: str,
        *,
        wait: bool = False,
        idempotency_key: str | None = None,
        request_fingerprint: str = "",
    ) -> Turn:
        """Start one turn in the caller's session (created when absent)."""
        validate_session_id(session_id)
        store = self.store_for(caller)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: 1-200 characters")
        agent = self.agent_for(caller)
        wanted = idempotency_key is not None or session_id in agent.sessions
        try:  # the header is read in the lock's thread: the cache and idempotency need it
            lock = await acquire_turn_lock(
                store,
                session_id,
                wait=self.busy_wait if wait or idempotency_key else 0,
                then=(lambda: store.info(session_id)) if wanted else None,
            )
        except SessionBusyError:
            self.metrics.turn(0, "busy")
            raise
        turn = Turn(session_id)
        try:
            info = lock.then_result
            if idempotency_key is not None:
                record = _record(info, idempotency_key)
                if record is not None:
                    await self._replay(turn, store, session_id, record, request_fingerprint)
                    await lock.release()
                    self.metrics.turn(0, "replayed")
                    return turn
            session = await self._session(agent, session_id, info)
        except BaseException:
            await lock.release()
            raise
        idem = (idempotency_key, request_fingerprint) if idempotency_key else None
        key = self.signals.key(store, session_id)
        self._running[key] = turn
        await self.signals.watch(key, turn.cancel)
        self._spawn(turn, self._run(turn, agent, session, text, lock, idem, key))
        return turn

    async def cancel_turn(self, caller: Caller, session_id: str, *, wait: float) -> dict[str, Any]:
        """Cancel the session's running turn, wherever it runs; wait up to ``wait`` seconds for
        it to end. 404 for a session that is not the caller's, 409 when no turn runs."""
        validate_session_id(session_id)
        store = self.store_for(caller)
        key = self.signals.key(store, session_id)
        answer: dict[str, Any] = {"session_id": session_id, "turn_id": None}
        turn = self._running.get(key)
        if turn is not None:  # this worker runs it
            answer["turn_id"] = turn.id
            if turn.cancel() and turn.task is not None:
                if wait > 0:
                    await asyncio.wait({turn.task}, timeout=wait)
                return answer | {"status": "cancelled" if turn.task.done() else "cancelling"}
        else:
            try:
                probe = await acquire_turn_lock(store, session_id, wait=0)
            except SessionBusyError:  # a turn runs elsewhere (or a header change, briefly)
                if not self.signals.shared:
                    raise ApiError(
                        409,
                        "cancel_unreachable",
                        "the turn runs in another process and this store has no shared cancel "
                        "channel; send the cancel to the worker running it",
                    ) from None
                await asyncio.to_thread(self.signals.publish, key)
                if wait <= 0:
                    return answer | {"status": "cancelling"}
                try:
                    probe = await acquire_turn_lock(store, session_id, wait=wait)
                except SessionBusyError:
                    return answer | {"status": "cancelling"}
                await probe.release()
                return answer | {"status": "cancelled"}
            await probe.release()
        if await store_call(store, "info", session_id) is None:
            raise not_found(session_id)
        raise ApiError(
            409,
            "no_turn_running",
            f"Session '{session_id}' is not running a turn: nothing to cancel",
        )

    def start_stateless(self, messages: list[Message], text: str) -> Turn:
        """Run one turn on the messages of a request; nothing is stored."""
        agent = self.stateless_agent()
        sid = f"stateless-{uuid.uuid4().hex}"
        session = agent.get_session(sid)
        if any(m.get("role") == "system" for m in messages):
            session.messages = list(messages)
        else:
            session.messages = session.messages[:1] + list(messages)
        turn = Turn(None)
        self._spawn(turn, self._run(turn, agent, session, text, None, None, None))
        return turn

    async def _session(self, agent: Agent, session_id: str, info: SessionInfo | None) -> Any:
        """The agent's session, from its memory when the store still holds that version (another
        worker may have added turns, or deleted it; ``info``: the header read under the turn
        lock), else loaded again."""
        cached = agent.sessions.get(session_id)
        if cached is not None:
            if info is None or info.version != cached.version or not cached.saved:
                agent.sessions.pop(session_id, None)
            else:
                agent.sessions[session_id] = agent.sessions.pop(session_id)  # most recent last
                return cached
        return await agent.aget_session(session_id)

    def _spawn(self, turn: Turn, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        turn.task = task

    async def _replay(
        self, turn: Turn, store: Any, session_id: str, record: dict[str, Any], fp: str
    ) -> None:
        if record.get("fp") and fp and record["fp"] != fp:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key",
            )
        turn.replayed = True
        if "error" in record:
            turn.error = ApiError(record.get("status", 502), **record["error"])
            turn.put("error", turn.error.body())
        else:
            stored = await store_call(store, "load", session_id)
            messages = stored.messages if stored is not None else []
            start, count = int(record.get("start", 0)), int(record.get("count", 0))
            turn.result = {
                "session_id": session_id,
                "reply": record.get("reply", ""),
                "messages": messages[start : start + count],
                "usage": record.get("usage", {}),
                "id": record.get("id"),
                "created": record.get("created"),
            }
            turn.put("final", turn.result)
        turn.events.put_nowait(None)

    async def _run(
        self,
        turn: Turn,
        agent: Agent,
        session: Any,
        text: str,
        lock: Any,
        idem: tuple[str, str] | None,
        key: str | None,
    ) -> None:
        sid = session.session_id
        started = time.monotonic()
        before = dict(session.metadata.get("usage") or {})
        result: dict[str, Any] | None = None
        failure: BaseException | None = None
        try:
            turn.running = True
            if turn.cancel_requested:  # cancelled before it started
                raise asyncio.CancelledError
            async for event in agent.stream(text, session_id=sid):
                if isinstance(event, FinalEvent):
                    turn.running = False  # the reply is complete: it is kept
                    _record_usage(session, before)  # before the agent's save
                    result = _result(session, event.text, before, turn.id)
                    if idem is not None:  # before the agent's save (if it saves itself)
                        _remember(session.metadata, idem, result)
                else:
                    turn.put(*_event(event))
            if result is None:
                raise ApiError(502, "no_reply", "the turn ended without a reply")
        except BaseException as exc:  # noqa: BLE001 - reported to the client below
            failure = exc
        finally:
            turn.running = False
        error: ApiError | None = None
        if isinstance(failure, asyncio.CancelledError) and turn.cancel_requested:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            failure, error = None, cancelled_error()
        elif failure is not None:
            if isinstance(failure, asyncio.CancelledError):
                error = ApiError(503, "cancelled", "the server stopped during the turn")
            else:
                error = error_for(failure)
        try:  # the agent saved the turn itself; what a failed turn left, or its record:
            if agent.session_manager is not None and error is not None:
                if idem is not None:
                    _remember(session.metadata, idem, _error_entry(error))
                await save_session(agent, session)
        except BaseException as exc:  # noqa: BLE001 - a turn that could not be stored
            if error is None:
                failure, error = exc, error_for(exc)
        finally:
            if error is not None or agent.session_manager is None:
                agent.sessions.pop(sid, None)  # a failed turn's memory is not trusted
            while len(agent.sessions) > SESSION_CACHE:
                agent.sessions.pop(next(iter(agent.sessions)))
            if key is not None:
                self.signals.unwatch(key)
                if self._running.get(key) is turn:
                    del self._running[key]
            if lock is not None:
                await lock.release()
        if error is None:
            assert result is not None
            turn.result = result | {"session_id": turn.session_id}
            turn.put("final", turn.result)
            self.metrics.turn(time.monotonic() - started, "ok")
        else:
            if isinstance(failure, StoreUnavailableError):
                self.metrics.store_error()
            turn.error = error
            turn.put("error", error.body())
            outcome = "cancelled" if error.code == "turn_cancelled" else "error"
            self.metrics.turn(time.monotonic() - started, outcome)
        turn.events.put_nowait(None)
        if failure is not None and not isinstance(failure, Exception):
            raise failure


async def save_session(agent: Agent, session: Any) -> None:
    """``agent.asave``: stores what the agent's own save has not (a failed turn's idempotency
    record); a no-op when memory equals the store."""
    await agent.asave(session)


def _event(event: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(event, TextDelta):
        return "delta", {"text": event.text}
    if isinstance(event, ToolCallEvent):
        return "tool_call", {"id": event.call_id, "name": event.name, "arguments": event.arguments}
    if isinstance(event, ToolStartEvent):
        return "tool_start", {"id": event.call_id, "name": event.name, "args": event.args}
    if isinstance(event, ToolResultEvent):
        return "tool_result", {
            "id": event.call_id,
            "name": event.name,
            "content": event.content,
            "is_error": event.is_error,
        }
    return "event", {"type": type(event).__name__}


def _error_entry(error: ApiError) -> dict[str, Any]:
    return {"status": error.status, "error": {"code": error.code, "message": error.message}}


def _turn_usage(session: Any, before: dict[str, Any]) -> dict[str, int]:
    after = session.metadata.get("usage") or {}
    return {
        k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in ("input_tokens", "output_tokens")
    }


def _record_usage(session: Any, before: dict[str, Any]) -> None:
    """Put the turn's token usage (all its model calls) on its final reply, ``"usage"``: the
    browser app's chart of tokens per turn reads it (providers never see the key)."""
    messages = session.messages
    if not messages or messages[-1].get("role") != "assistant":
        return
    usage = _turn_usage(session, before)
    if not any(usage.values()):
        return
    reply = {**messages[-1], "usage": usage}
    messages[-1] = reply
    if session._valid_upto == len(messages):
        session._valid_last = reply  # the agent's cache of the last checked message


def _record(info: SessionInfo | None, key: str) -> dict[str, Any] | None:
    """The stored result of the turn sent with Idempotency-Key ``key``, if any."""
    if info is None:
        return None
    server = info.metadata.get(SERVER_KEY) or {}
    record = (server.get("idempotency") or {}).get(key)
    return record if isinstance(record, dict) else None


def cancelled_error() -> ApiError:
    """What a cancelled turn answers (its JSON request, its ``error`` event)."""
    return ApiError(
        409,
        "turn_cancelled",
        "the turn was cancelled; the session keeps your input and what the tools did, "
        "the unfinished reply was dropped",
    )


def _result(session: Any, reply: str, before: dict[str, Any], turn_id: str) -> dict[str, Any]:
    messages = session.messages
    start = len(messages)
    while start > 0 and messages[start - 1].get("role") != "user":
        start -= 1
    start = max(0, start - 1)
    return {
        "reply": reply,
        "messages": messages[start:],  # the turn's own new dicts, sent as JSON at once
        "start": start,
        "usage": _turn_usage(session, before),
        "id": turn_id,
        "created": int(time.time()),
    }


def _remember(metadata: dict[str, Any], idem: tuple[str, str], entry: dict[str, Any]) -> None:
    key, fp = idem
    server = metadata.setdefault(SERVER_KEY, {})
    records = dict(server.get("idempotency") or {})
    if "error" in entry:
        records[key] = {"fp": fp, **entry}
    else:
        records[key] = {
            "fp": fp,
            "reply": entry["reply"],
            "start": entry["start"],
            "count": len(entry["messages"]),
            "usage": entry["usage"],
            "id": entry["id"],
            "created": entry["created"],
        }
    while len(records) > IDEMPOTENCY_KEEP:
        records.pop(next(iter(records)))
    server["idempotency"] = records

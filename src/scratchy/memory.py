"""Memory across sessions: what the user told one session, the next one knows.

:class:`MemoryStore` is one owner's memories, kept by the session store's backend (see
:mod:`scratchy.stores.memory_base`): ``remember``/``recall``/``update``/``forget``/``list``, each
with an ``a``-prefixed coroutine form that runs in a worker thread. It owns the policy:

* **no secrets**: a text that the redaction of exports would mask (API keys, tokens, passwords,
  secret assignments, URL passwords) or that holds a private key is refused with
  :class:`SecretRefusedError`;
* **no duplicates**: a text that restates a stored memory (same words, case, accents and
  punctuation aside) returns the stored entry instead of adding one;
* **history**: ``update`` keeps the superseded text (and its provenance) in ``history``.

:class:`AgentMemory` (``Agent(memory=True)`` makes ``agent.memory``) adds what the model sees:
the ``remember`` and ``recall`` tools, and at the start of a new session the memories relevant
to the first message, within ``budget`` tokens, as a system message marked as memories. That
message is only sent, never stored: the transcript stays what was said, and the ids of the
memories shown are kept in the session's metadata (``"memories"``) so a resumed session shows
the same ones. With ``Agent(memory="auto")`` the model is also asked after each turn, with a
strict prompt, for durable facts the user stated; they are checked against the user's own words,
deduplicated, and a fact that contradicts a stored one supersedes it (history kept).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import ScratchyError, ToolError, UsageError
from .stores.base import BaseStore, fold, utcnow
from .stores.memory_base import STOPWORDS, Memory, MemoryBackend, MemoryHit, recall_terms

if TYPE_CHECKING:
    from .agent import Agent, Session
    from .messages import Message
    from .sessions import SessionManager

__all__ = [
    "AgentMemory",
    "Memory",
    "MemoryHit",
    "MemoryNotFoundError",
    "MemoryStore",
    "SecretRefusedError",
    "looks_secret",
]

logger = logging.getLogger("scratchy.memory")

MAX_TEXT = 1000
MAX_TAGS = 10
DEFAULT_BUDGET = 300
"""Tokens (about 4 characters each) of memories put into a new session's context."""
MEMORY_HEADER = (
    "Memories saved from the user's earlier sessions (notes, not part of this conversation; "
    "they may be out of date, and the user can change them):"
)
_TAG_RE = re.compile(r"^[^\s,]{1,40}$")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_WORDS = re.compile(r"\w+", re.UNICODE)
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "scratchy_memory_source", default=None
)


class SecretRefusedError(UsageError):
    """A memory would hold a secret (an API key, token, password or private key)."""


class MemoryNotFoundError(ScratchyError, KeyError):
    """No memory has that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def looks_secret(text: str) -> bool:
    """True when ``text`` holds something the redaction of exports masks, or a private key."""
    from .export import redact_text

    return bool(_PRIVATE_KEY.search(text)) or redact_text(text) != text


def _refuse() -> SecretRefusedError:
    return SecretRefusedError(
        "Not remembered: it looks like a secret (an API key, token, password or private key), "
        "and memories never keep secrets; keep it in an environment variable or a password "
        "manager"
    )


def _words(text: str) -> list[str]:
    return _WORDS.findall(fold(text))


def same_fact(a: str, b: str) -> bool:
    """True when two texts say the same words (case, accents, punctuation aside)."""
    return _words(a) == _words(b)


def _clean_text(text: object) -> str:
    if not isinstance(text, str):
        raise UsageError(f"a memory is text, not {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise UsageError("a memory needs some text, e.g. remember('I prefer tabs')")
    if len(cleaned) > MAX_TEXT:
        raise UsageError(
            f"a memory is at most {MAX_TEXT} characters ({len(cleaned)} given): keep one short fact"
        )
    if looks_secret(cleaned):
        raise _refuse()
    return cleaned


def _clean_tags(tags: Iterable[str] | str | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not _TAG_RE.match(tag.strip()):
            raise UsageError(
                f"invalid tag {tag!r}: tags are single words of at most 40 characters, "
                "e.g. tags=['python', 'style']"
            )
        t = tag.strip().lower()
        if t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise UsageError(f"at most {MAX_TAGS} tags per memory ({len(out)} given)")
    if any(looks_secret(t) for t in out):
        raise _refuse()
    return out


def _now() -> str:
    return utcnow().isoformat(timespec="microseconds")


class MemoryStore:
    """One owner's memories (the owner of ``store``: ``store.scoped(owner)`` for a server key's
    owner; the root of a local store is the one local owner).

    Args:
        store: A session store, a ``SessionManager``, or None for the default store
            (``scratchy/session_history`` or ``$SCRATCHY_SESSION_DIR``).
    """

    def __init__(self, store: BaseStore | SessionManager | None = None) -> None:
        self._store_arg = store
        self._backend: MemoryBackend | None = None

    @property
    def store(self) -> BaseStore:
        """The session store whose backend keeps these memories."""
        from .sessions import SessionManager, open_store

        arg = self._store_arg
        if isinstance(arg, SessionManager):
            return arg.store
        return arg if arg is not None else open_store()

    @property
    def backend(self) -> MemoryBackend:
        """Where the entries live (opened on first use)."""
        if self._backend is None:
            from .stores.memory_base import backend_for

            self._backend = backend_for(self.store)
        return self._backend

    # -- the API -----------------------------------------------------------------------------

    def remember(
        self,
        text: str,
        *,
        tags: Iterable[str] | str | None = None,
        source: dict[str, Any] | None = None,
    ) -> Memory:
        """Keep ``text`` (one short fact); returns the entry. A text that restates a stored
        memory returns that entry (with any new tags added) instead of a second copy.

        Raises:
            SecretRefusedError: the text or a tag looks like a secret.
            UsageError: empty text, more than 1000 characters, or a bad tag.
        """
        cleaned, tag_list = _clean_text(text), _clean_tags(tags)
        found = self._duplicate(cleaned)
        if found is not None:
            missing = [t for t in tag_list if t not in found.tags]
            if not missing:
                return found

            def add_tags(m: Memory) -> Memory:
                m.tags = [*m.tags, *(t for t in missing if t not in m.tags)][:MAX_TAGS]
                m.updated_at = _now()
                return m

            return self.backend.modify(found.id, add_tags) or found
        now = _now()
        memory = Memory(
            id="m_" + secrets.token_hex(5),
            text=cleaned,
            tags=tag_list,
            created_at=now,
            updated_at=now,
            source=dict(source) if source else None,
        )
        self.backend.insert(memory)
        return memory

    def _duplicate(self, text: str) -> Memory | None:
        for hit in self.backend.search(recall_terms(text), 10):
            if same_fact(hit.memory.text, text):
                return hit.memory
        return None

    def recall(self, query: str, *, limit: int = 5) -> list[Memory]:
        """The memories most relevant to ``query``, best first (full-text ranked; any word may
        match, common words aside; the last word also matches as a prefix)."""
        return [h.memory for h in self.search(query, limit=limit)]

    def search(self, query: str, *, limit: int = 5) -> list[MemoryHit]:
        """:meth:`recall` with each entry's rank (``hit.memory``, ``hit.score``)."""
        if not isinstance(query, str):
            raise UsageError(f"a recall query is text, not {type(query).__name__}")
        if not 1 <= limit <= 1000:
            raise UsageError(f"limit must be between 1 and 1000, not {limit}")
        terms = recall_terms(query)
        return self.backend.search(terms, limit) if terms else []

    def get(self, memory_id: str) -> Memory | None:
        """The entry ``memory_id``, or None."""
        return self.backend.get(memory_id)

    def resolve(self, prefix: str) -> Memory:
        """The entry whose id is ``prefix`` or starts with it (at least 4 characters, one
        match); ``MemoryNotFoundError`` otherwise."""
        found = self.backend.get(prefix)
        if found is not None:
            return found
        if len(prefix) >= 4:
            matches = [m for m in self.backend.all() if m.id.startswith(prefix)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise MemoryNotFoundError(
                    f"memory id {prefix!r} is ambiguous ({len(matches)} match): give more of it"
                )
        raise MemoryNotFoundError(f"no memory {prefix!r} (see `scratchy memory list`)")

    def update(
        self,
        memory_id: str,
        text: str | None = None,
        *,
        tags: Iterable[str] | str | None = None,
        source: dict[str, Any] | None = None,
    ) -> Memory:
        """Replace the text (and/or tags) of ``memory_id``; the old text goes to ``history``.

        Raises:
            MemoryNotFoundError: no such memory.
            SecretRefusedError: the new text looks like a secret.
        """
        cleaned = _clean_text(text) if text is not None else None
        tag_list = _clean_tags(tags) if tags is not None else None

        def change(m: Memory) -> Memory | None:
            changed = False
            now = _now()
            if cleaned is not None and cleaned != m.text:
                m.history.append({"text": m.text, "until": now, "source": m.source})
                m.text, m.source, changed = cleaned, dict(source) if source else None, True
            if tag_list is not None and tag_list != m.tags:
                m.tags, changed = tag_list, True
            if not changed:
                return None
            m.updated_at = now
            return m

        found = self.backend.modify(memory_id, change)
        if found is None:
            raise MemoryNotFoundError(f"no memory {memory_id!r} (see `scratchy memory list`)")
        return found

    def forget(self, memory_id: str) -> bool:
        """Delete ``memory_id`` (history included); False when there was no such memory."""
        return self.backend.delete([memory_id]) > 0

    def forget_session(self, session_id: str) -> list[str]:
        """Delete the memories taken from ``session_id``; returns their ids."""
        ids = self.backend.from_session(session_id)
        self.backend.delete(ids)
        return ids

    def list(self, *, tag: str | None = None) -> list[Memory]:
        """Every memory (or those tagged ``tag``), most recently updated first."""
        entries = self.backend.all()
        if tag is not None:
            entries = [m for m in entries if tag.lower() in m.tags]
        entries.sort(key=lambda m: (m.updated_at, m.id), reverse=True)
        return entries

    def count(self) -> int:
        """How many memories there are."""
        return self.backend.count()

    def export(self) -> list[dict[str, Any]]:
        """Every memory as plain data (oldest first), history and provenance included."""
        return [m.as_dict() for m in self.backend.all()]

    # -- coroutine forms (worker threads: the event loop never waits on store I/O) -------------

    async def aremember(self, text: str, **options: Any) -> Memory:
        """:meth:`remember` in a worker thread."""
        return await asyncio.to_thread(self.remember, text, **options)

    async def arecall(self, query: str, *, limit: int = 5) -> list[Memory]:
        """:meth:`recall` in a worker thread."""
        return await asyncio.to_thread(self.recall, query, limit=limit)

    async def aupdate(self, memory_id: str, text: str | None = None, **options: Any) -> Memory:
        """:meth:`update` in a worker thread."""
        return await asyncio.to_thread(self.update, memory_id, text, **options)

    async def aforget(self, memory_id: str) -> bool:
        """:meth:`forget` in a worker thread."""
        return await asyncio.to_thread(self.forget, memory_id)

    async def alist(self, *, tag: str | None = None) -> list[Memory]:
        """:meth:`list` in a worker thread."""
        return await asyncio.to_thread(self.list, tag=tag)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store.location!r})"


def attach(agent: Agent, memory: bool | str | None) -> AgentMemory | None:
    """``agent.memory`` for ``Agent(memory=...)``: None when off."""
    if memory in (None, False):
        return None
    if memory is True or memory == "on":
        return AgentMemory(agent, auto=False)
    if memory == "auto":
        return AgentMemory(agent, auto=True)
    raise UsageError(f"memory must be True, False or 'auto', not {memory!r}")


class AgentMemory(MemoryStore):
    """An agent's memory: the store of its session manager's owner, plus what the model sees
    (tools, memories in a new session's context, and with ``auto`` extraction after turns).

    Attributes:
        budget: Tokens of memories put into a new session's context (about 4 characters each).
        limit: At most this many memories go into a new session's context.
        auto: Ask the model for durable facts after each turn.
    """

    def __init__(self, agent: Agent, *, auto: bool = False) -> None:
        super().__init__(None)
        self.agent = agent
        self.auto = auto
        self.budget = DEFAULT_BUDGET
        self.limit = 5
        self._shown: dict[str, list[Memory]] = {}  # session id -> memories in its context
        for t in memory_tools(self):
            agent.tools.add(t)

    def bind(self, agent: Agent) -> AgentMemory | None:
        """The same memory settings for another agent (a server's copy of a template agent):
        its own store (the agent's session manager's) and its own ``remember``/``recall``
        tools in a registry of its own. None (and no memory tools) for an agent without a
        session manager: nothing of it is stored, so it has no owner's memories."""
        from .tools import ToolRegistry

        names = {"remember", "recall"}
        agent.tools = ToolRegistry(t for t in agent.tools if t.name not in names)
        if agent.session_manager is None:
            return None
        bound = AgentMemory(agent, auto=self.auto)
        bound.budget, bound.limit = self.budget, self.limit
        return bound

    @property
    def store(self) -> BaseStore:
        """The agent's session store (the default store when it has no session manager)."""
        from .sessions import open_store

        manager = self.agent.session_manager
        return manager.store if manager is not None else open_store()

    def forget(self, memory_id: str) -> bool:
        """Delete ``memory_id``; it also leaves the context of this agent's sessions."""
        for shown in self._shown.values():
            shown[:] = [m for m in shown if m.id != memory_id]
        return super().forget(memory_id)

    # -- the turn ------------------------------------------------------------------------------

    async def start_turn(self, session: Session) -> None:
        """Called once the user's message is added: note the provenance for the tools, and in a
        new session choose the memories relevant to the first message (within the budget)."""
        messages = session.messages
        index = len(messages) - 1
        _current.set({"session": session.session_id, "message": index})
        sid = session.session_id
        if sid in self._shown:
            return
        ids = session.metadata.get("memories")
        if isinstance(ids, list):  # a resumed session: the memories it was shown
            found = await asyncio.to_thread(lambda: [self.get(str(i)) for i in ids])
            self._shown[sid] = [m for m in found if m is not None]
            return
        if sum(1 for m in messages if m.get("role") == "user") != 1:
            self._shown[sid] = []  # not a new session: nothing is added to it
            return
        from .messages import text_of

        hits = await asyncio.to_thread(self.recall, text_of(messages[index]), limit=self.limit)
        chosen, used = [], _tokens(MEMORY_HEADER)
        for m in hits:
            cost = _tokens(_line(m))
            if used + cost > self.budget:
                continue
            chosen.append(m)
            used += cost
        self._shown[sid] = chosen
        if chosen:
            session.metadata["memories"] = [m.id for m in chosen]

    def context(self, session: Session, messages: list[Message]) -> list[Message]:
        """``messages`` as sent to the model: the memories block after the system prompt."""
        shown = self._shown.get(session.session_id)
        if not shown:
            return messages
        from .messages import system

        block = system(MEMORY_HEADER + "\n" + "\n".join(_line(m) for m in shown))
        at = 1 if messages and messages[0].get("role") == "system" else 0
        return [*messages[:at], block, *messages[at:]]

    async def end_turn(self, session: Session) -> list[tuple[str, Memory]]:
        """With ``auto``: extract durable facts from the turn's user message (see the module
        docstring). Returns what changed: ``("added" | "kept" | "superseded", entry)``."""
        if not self.auto:
            return []
        from .memory_extract import extract

        try:
            changes = await extract(self, session)
        except ScratchyError as exc:  # the reply stands; a failed extraction stores nothing
            logger.warning("memory: extraction after the turn failed (%s)", exc)
            return []
        agent = self.agent
        if agent.autosave and agent.session_manager is not None and session._usage_pending:
            await agent.asave(session)  # the extraction's tokens, with the session's usage
        return changes

    def memory_tools(self) -> list[Any]:
        """The ``remember`` and ``recall`` tools bound to this memory."""
        return memory_tools(self)


def _line(m: Memory) -> str:
    tags = f" (tags: {', '.join(m.tags)})" if m.tags else ""
    return f"- [{m.id}] {m.text}{tags}"


def _tokens(text: str) -> int:
    return 1 + len(text) // 4


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry meaning (no common words, at least 3 letters)."""
    return {w for w in _words(text) if len(w) >= 3 and w not in STOPWORDS and w != "user"}


def memory_tools(memory: AgentMemory) -> list[Any]:
    """The model's tools: ``remember`` (keep a fact) and ``recall`` (search memories)."""
    from .tools import Tool

    async def remember(text: str, tags: list[str] | None = None) -> str:
        """Save a durable fact the user told you about themselves or their work (their name,
        preferences, project conventions) so that later sessions know it. Never save secrets
        or your own guesses.

        Args:
            text: The fact, one short sentence (e.g. "The user prefers tabs").
            tags: Optional keywords (e.g. ["style"]).
        """
        try:
            m = await memory.aremember(text, tags=tags, source=_current.get())
        except UsageError as exc:
            raise ToolError(str(exc)) from None
        return f"Remembered [{m.id}]: {m.text}"

    async def recall(query: str) -> str:
        """Search the memories saved in earlier sessions.

        Args:
            query: Words to look for (e.g. "name editor preferences").
        """
        try:
            found = await memory.arecall(query, limit=5)
        except UsageError as exc:
            raise ToolError(str(exc)) from None
        if not found:
            return f"No memories match {query!r}."
        return "\n".join(_line(m) for m in found)

    return [Tool.from_function(remember), Tool.from_function(recall)]


def dumps(entries: list[Memory]) -> str:
    """Entries as indented JSON (``scratchy memory export``)."""
    return json.dumps([m.as_dict() for m in entries], ensure_ascii=False, indent=2)

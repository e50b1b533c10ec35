"""Reading long sessions fast: each worker keeps the messages of the sessions it was asked to
page through, checked against the store's version on every request.

``GET .../messages`` asks for a page (100 messages) of a session, often of a long one, and a
reader scrolling up asks again and again. The stores load a session whole (a TOON file is
decoded from its start), so without this every page of a 10,000-message session costs the
whole session. With it, a page costs the store's header read (``info``: a ``stat`` and a cached
header for TOON files, one small query for the databases) and a slice.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..messages import Message
from ..stores.base import SessionInfo
from .runtime import store_call

MAX_MESSAGES = 200_000
"""Messages a worker keeps at most, over all sessions (the least recently read go first)."""
MAX_SESSIONS = 64
MIN_MESSAGES = 200
"""Shorter sessions are not kept: loading them costs little."""


class MessageCache:
    """The messages of recently read sessions, by (owner, session id), with their version."""

    def __init__(self, max_messages: int = MAX_MESSAGES, max_sessions: int = MAX_SESSIONS):
        self.max_messages = max_messages
        self.max_sessions = max_sessions
        self._entries: OrderedDict[tuple[str | None, str], tuple[str, list[Message]]] = (
            OrderedDict()
        )
        self._size = 0
        self.hits = 0
        self.misses = 0

    async def read(
        self, store: Any, owner: str | None, session_id: str
    ) -> tuple[SessionInfo, list[Message]] | None:
        """The session's header and messages (None: no such session)."""
        key = (owner, session_id)
        entry = self._entries.get(key)
        if entry is not None:
            info = await store_call(store, "info", session_id)
            if info is None:
                self._drop(key)
                return None
            if info.version == entry[0] and info.message_count == len(entry[1]):
                self._entries.move_to_end(key)
                self.hits += 1
                return info, entry[1]
        stored = await store_call(store, "load", session_id)
        self.misses += 1
        if stored is None:
            self._drop(key)
            return None
        self._keep(key, stored.info.version, stored.messages)
        return stored.info, stored.messages

    def _keep(self, key: tuple[str | None, str], version: str, messages: list[Message]) -> None:
        self._drop(key)
        if len(messages) < MIN_MESSAGES or len(messages) > self.max_messages:
            return
        self._entries[key] = (version, messages)
        self._size += len(messages)
        while self._size > self.max_messages or len(self._entries) > self.max_sessions:
            _, (_, old) = self._entries.popitem(last=False)
            self._size -= len(old)

    def _drop(self, key: tuple[str | None, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= len(entry[1])

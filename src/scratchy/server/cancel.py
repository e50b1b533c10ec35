"""Cancel signals: how ``POST /v1/sessions/{id}/turns/cancel`` reaches the running turn.

The worker that answers the request is often not the one running the turn (another worker
process, another machine on PostgreSQL or Redis). Each worker watches the sessions whose turns it
runs; a cancel that finds the session's turn lock held publishes the session's key on the
store's shared channel, and the worker that watches that key cancels its turn:

* TOON files and SQLite (one machine): a marker file per session in the store's lock directory
  (``.locks/cancel/``). A worker polls the markers of the turns it runs every
  :data:`POLL_SECONDS` (one ``stat`` each, only while it runs turns), and removes them.
* PostgreSQL: ``NOTIFY scratchy_cancel`` (the schema and the key as payload); each worker
  ``LISTEN``\\ s on a connection of its own, in a thread, from its first turn on.
* Redis: ``PUBLISH`` on ``<prefix>cancel``; each worker subscribes, in a thread.
* Any other store: this worker's own turns only.

A signal names a session, not a turn: it cancels whatever turn that session runs when it
arrives (one at a time, by the turn lock), and nothing when none runs. A marker left behind is
removed when the next turn on that session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("scratchy.server")

POLL_SECONDS = 0.1
"""How often a worker looks at the cancel markers of its turns (file stores)."""
PG_CHANNEL = "scratchy_cancel"


class Signals:
    """This worker's watched sessions; subclasses carry signals to other workers."""

    shared = False
    """Whether signals reach other processes (False: this worker's turns only)."""

    def __init__(self) -> None:
        self._watched: dict[str, Callable[[], Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def watch(self, key: str, on_cancel: Callable[[], Any]) -> None:
        """Call ``on_cancel`` (in the event loop) when a cancel for ``key`` arrives."""
        self._loop = asyncio.get_running_loop()
        self._watched[key] = on_cancel

    def key(self, store: Any, session_id: str) -> str:
        """What names the session ``session_id`` of ``store`` (an owner's view) on this channel:
        its id under the owner's namespace."""
        key = getattr(store, "_key", None)
        return key(session_id) if callable(key) else session_id

    def unwatch(self, key: str) -> None:
        """Stop watching ``key`` (its turn ended)."""
        self._watched.pop(key, None)

    def publish(self, key: str) -> None:
        """Send a cancel for ``key`` to every worker (blocking: run it in a thread)."""

    def _fire(self, key: str) -> None:
        callback = self._watched.get(key)
        if callback is not None:
            callback()

    def _deliver(self, key: str) -> None:
        """A signal from the listener thread: handled in the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._fire, key)

    def close(self) -> None:
        """Stop listening."""


class FileSignals(Signals):
    """Marker files in ``directory``, polled while this worker runs turns."""

    shared = True

    def __init__(self, locks: Callable[[Any], Path]) -> None:
        super().__init__()
        self._locks = locks  # the lock directory of a store (an owner's view)
        self._poller: asyncio.Task[None] | None = None

    def key(self, store: Any, session_id: str) -> str:
        name = super().key(store, session_id).replace("/", "%2F") + ".cancel"
        return str(self._locks(store) / "cancel" / name)

    @staticmethod
    def _path(key: str) -> Path:
        return Path(key)

    async def watch(self, key: str, on_cancel: Callable[[], Any]) -> None:
        with contextlib.suppress(OSError):  # a signal left from an earlier turn
            self._path(key).unlink()
        await super().watch(key, on_cancel)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._watched:
            await asyncio.sleep(POLL_SECONDS)
            for key in list(self._watched):
                path = self._path(key)
                if path.exists():
                    with contextlib.suppress(OSError):
                        path.unlink()
                    self._fire(key)

    def publish(self, key: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch()


class _ThreadSignals(Signals):
    """A listener thread, started at the first watched turn (its subscription is in place
    before that turn runs, so no signal for it is missed)."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()

    async def watch(self, key: str, on_cancel: Callable[[], Any]) -> None:
        await super().watch(key, on_cancel)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="scratchy-cancel-listener", daemon=True
            )
            self._thread.start()
        if not self._ready.is_set():
            await asyncio.to_thread(self._ready.wait, 5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - the store away for a moment: again
                logger.warning("cancel listener: %s (reconnecting)", exc)
                self._ready.set()  # turns must not wait for a listener that cannot connect
                self._stop.wait(1.0)

    def _listen(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()


class PostgresSignals(_ThreadSignals):
    """``LISTEN``/``NOTIFY`` on the store's database."""

    def __init__(self, store: Any) -> None:
        super().__init__()
        self._store = store
        self._schema = store.schema or ""

    def _listen(self) -> None:
        conn = self._store._connect()  # a connection of its own, outside the pool
        try:
            conn.autocommit = True
            conn.execute(f"LISTEN {PG_CHANNEL}")
            self._ready.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=1.0):
                    schema, _, key = note.payload.partition("\n")
                    if schema == self._schema:
                        self._deliver(key)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def publish(self, key: str) -> None:
        payload = f"{self._schema}\n{key}"
        self._store._tx(
            lambda conn: conn.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, payload)),
            write=True,
        )


class RedisSignals(_ThreadSignals):
    """``PUBLISH``/``SUBSCRIBE`` on ``<prefix>cancel``."""

    def __init__(self, store: Any) -> None:
        super().__init__()
        self._store = store
        self._channel = store._k("cancel")

    def _listen(self) -> None:
        pubsub = self._store._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel)
            self._ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message and message.get("type") == "message":
                    data = message["data"]
                    self._deliver(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def publish(self, key: str) -> None:
        self._store._redis.publish(self._channel, key)


def signals_for(store: Any) -> Signals:
    """The cancel channel of a store (see the module's docstring)."""

    def loaded(module: str, name: str) -> type | None:
        found = sys.modules.get(f"scratchy.stores.{module}")
        return getattr(found, name, None) if found is not None else None

    toon, sqlite = loaded("toon_files", "TOONFileStore"), loaded("sqlite", "SQLiteStore")
    postgres, redis = loaded("postgres", "PostgresStore"), loaded("redis", "RedisStore")
    if toon is not None and isinstance(store, toon):  # an owner's view: its own directory
        return FileSignals(lambda view: Path(view.directory) / ".locks")
    if sqlite is not None and isinstance(store, sqlite):
        return FileSignals(lambda view: Path(view.path).with_name(Path(view.path).name + ".locks"))
    if postgres is not None and isinstance(store, postgres):
        return PostgresSignals(store)
    if redis is not None and isinstance(store, redis):
        return RedisSignals(store)
    return Signals()


__all__ = ["FileSignals", "PostgresSignals", "RedisSignals", "Signals", "signals_for"]

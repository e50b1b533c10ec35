"""The default session store: one TOON file per session, ``<dir>/<id>_chat.toon``.

Layout of a file (a complete TOON document at every instant)::

    format: scratchy-session/1
    session_id: my_project
    title: Hello
    created_at: "2025-11-22T20:30:15.123456+00:00"
    updated_at: "2025-11-22T20:35:42.654321+00:00"
    metadata:
      ...
    messages[3]:
      - role: system
        content: You are a helpful AI assistant.
      - role: user
        content: Hello

The header comes first so that listing reads only the top of each file, and ``messages`` is
always the last key, encoded as list items, so that an append re-uses the encoded text of the
messages already stored (I/O and CPU proportional to the file, but no re-encoding).

Every write goes to a temporary file (``<dir>/.tmp/<id>_chat.toon.<pid>.<n>.tmp``,
mode 0600), is flushed and fsynced, renamed over the session file with ``os.replace`` and the
directory is fsynced: a process killed at any instant leaves the old or the new file. Writers of
one session are serialised by a ``filelock`` lock in ``<dir>/.locks/``; leftover temporary files
of a killed writer are removed by the next writer of that session (they are never listed).

Past ``JOURNAL_AT`` (256 KB) a file is no longer rewritten for every write: appends and header
changes go to the session's journal ``<dir>/.journal/<id>.jsonl`` (checksummed, fsynced records,
see :mod:`._journal`), folded into a new file when the journal would pass the file's size. The
file then holds the session as of the last fold; every reader reads the file, then its journal.

Files written by the original Scratchy (JSON in a ``.toon`` file) are read too, and become TOON
on the next write. Listings come from ``<dir>/.index/``: the catalog (``catalog.sqlite``, kept
by every writer, see :mod:`._catalog`) and a snapshot of the last full listing
(``listing.json``); both are derived, checked against the files, and rebuilt when damaged.
Closing a session (:meth:`TOONFileStore.close_session`) folds its journal into its file.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from .. import toon
from ..errors import (
    SessionCorruptedError,
    SessionError,
    StoreUnavailableError,
)
from ..messages import ROLES, Message, validate_messages
from . import _journal as jr
from ._catalog import Catalog
from ._toon_accel import decode_session
from ._toon_layout import (
    _fsync_dir,
    _stat_key,
    _version,
    encode_header,
    encode_message,
)
from ._toon_listing import ListingMixin
from .base import (
    BaseStore,
    Header,
    SearchHit,
    SessionInfo,
    StoredSession,
    T,
    TrashedSession,
    Writer,
    file_turn_lock,
    parse_time,
    validate_session_id,
)

FORMAT = "scratchy-session/1"
SUFFIX = "_chat.toon"
INDEX_DIR = ".index"
TMP_DIR = ".tmp"
TRASH_DIR = ".trash"
OWNERS_DIR = ".owners"
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
LOCK_TIMEOUT = 30.0
_BLANK = " \t\r\n"
_MESSAGES_LINE = re.compile(r"^messages\[(\d+)\]:[ \t]*$", re.M)
_counter = itertools.count()


def _strip_blank_tail(text: str) -> str:
    """``text`` without its trailing blank lines: the line ends at the end and the blanks
    after them, never the trailing blanks of the last line (a linear-time version of the
    regex ``(?:\\r?\\n[ \\t\\r]*)+\\Z``)."""
    end = len(text.rstrip(_BLANK))
    cut = text.find("\n", end)
    if cut < 0:
        return text
    if cut > end and text[cut - 1] == "\r":
        cut -= 1
    return text[:cut]


@dataclass(slots=True)
class _Cached:
    """What this process knows about a file it read or wrote (keyed by its stat)."""

    stat_key: tuple[int, int, int]
    info: SessionInfo
    header: dict[str, Any]
    body: str | None
    """The encoded message items (text after the ``messages[N]:`` line), when re-usable."""
    full: bool = True
    """False when only the header was read (``body`` is then unknown)."""


@dataclass(slots=True)
class _State:
    """A session as its readers see it: the file, its journal, and both combined."""

    toon: _Cached
    journal: jr.JournalState
    info: SessionInfo


def _base(info: SessionInfo) -> str:
    return jr.base_of(info.message_count, info.created_at.isoformat(), info.updated_at.isoformat())


def _combined(cached: _Cached, journal: jr.JournalState) -> SessionInfo:
    """The file's header updated by its journal's last record."""
    info = copy.copy(cached.info)
    info.metadata = copy.deepcopy(info.metadata)
    if journal.length and journal.header is not None:
        h = journal.header
        info.message_count = journal.total
        info.title = str(h.get("title") or "")
        info.created_at = parse_time(h.get("created_at")) or info.created_at
        info.updated_at = parse_time(h.get("updated_at")) or info.updated_at
        meta = h.get("metadata")
        info.metadata = copy.deepcopy(meta) if isinstance(meta, dict) else {}
        info.size += journal.length
        info.version += f"-{journal.length:x}"
        info.local_times = None
    return info


class TOONFileStore(ListingMixin, BaseStore):
    """Sessions as TOON files in one directory. Thread-safe; safe across processes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)
        self._cache: dict[str, _Cached] = {}  # saves re-reading; checked against the file's stat
        self._catalog = Catalog(self.directory)  # listing rows, kept by every writer
        self._known: dict[str, Any] = {}  # headers seen, by stat (see _toon_listing)
        self._known_tz = ""
        self._owners: dict[str, TOONFileStore] = {}
        self._mutex = threading.RLock()
        self._search_index: Any = None
        self._jcache: dict[str, jr.JournalState] = {}  # journals read, for incremental reads

    def scoped(self, owner: str) -> TOONFileStore:
        """The sessions of ``owner``: files in ``<dir>/.owners/<owner>/`` (one store object per
        owner, so its catalog connection and caches are kept between requests)."""
        validate_session_id(owner)
        with self._mutex:
            view = self._owners.get(owner)
            if view is None:
                if len(self._owners) >= 256:  # bounded: the others reopen when used again
                    self._owners.clear()
                view = self._owners[owner] = TOONFileStore(self.directory / OWNERS_DIR / owner)
            return view

    def close_session(self, session_id: str) -> None:
        """Fold the session's journal into its file, if it has one (see the module doc)."""
        key = self._key(session_id)
        if self._jpath(key).exists():
            self._transact(key, lambda w: w.fold())  # type: ignore[attr-defined]

    def close(self) -> None:
        """Close the catalog and search index (reopened when used again)."""
        self._catalog.close()
        with self._mutex:
            for view in self._owners.values():
                view.close()
            if self._search_index is not None:
                self._search_index.close()
                self._search_index = None

    # -- paths and locks ---------------------------------------------------------------------

    def path(self, session_id: str) -> Path:
        """The file of ``session_id`` (validated; always inside the directory)."""
        return self.directory / (validate_session_id(session_id) + SUFFIX)

    def _ensure_dir(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.directory / ".locks").mkdir(mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self, session_id: str) -> Iterator[None]:
        try:
            self._ensure_dir()
        except OSError as exc:
            raise self._not_writable(exc) from None
        lock = FileLock(str(self.directory / ".locks" / f"{session_id}.lock"), timeout=LOCK_TIMEOUT)
        with self._mutex, lock:
            yield

    def _not_writable(self, exc: OSError) -> StoreUnavailableError:
        reason = exc.strerror or type(exc).__name__
        return StoreUnavailableError(
            f"Cannot write sessions in {self.directory} ({reason}): make the directory writable "
            "or use another one (--dir / SCRATCHY_SESSION_DIR)"
        )

    def _transact(self, key: str, fn: Callable[[Writer], T]) -> T:
        path = self.path(key)
        try:
            with self._locked(key):
                writer = _FileWriter(self, key, path)
                result = fn(writer)
                if writer.began:  # only after a successful write: else the mark stays
                    self._catalog_written(key, writer.written)
                return result
        except (PermissionError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno not in _NOT_WRITABLE:
                raise
            raise self._not_writable(exc) from None

    def _turn_lock(self, key: str, timeout: float | None, lease: float) -> Any:
        return file_turn_lock(self.directory / ".locks", key, timeout)

    # -- reading -----------------------------------------------------------------------------

    def _decode(self, session_id: str, path: Path) -> tuple[_Cached, list[Message]] | None:
        """Read, decode and check a whole file; None when it does not exist."""
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return None
        key = _stat_key(st)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise self._corrupt(path, line, "not valid UTF-8") from None
        body = None
        if text.lstrip().startswith("{"):  # written by the original Scratchy: JSON
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise self._corrupt(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
        else:
            # a final newline (editors add one) or trailing blank lines; never a character of
            # the last value (str.rstrip would take a trailing U+00A0 of an unquoted string)
            text = _strip_blank_tail(text)
            try:
                doc = decode_session(text)  # by toons, when installed (scratchy[fast])
            except toon.ToonDecodeError as exc:
                raise self._corrupt(path, exc.line, exc.reason) from None
            match = _MESSAGES_LINE.search(text)
            if match and isinstance(doc, dict) and doc.get("format") == FORMAT:
                body = text[match.end() + 1 :]
        header = self._check_doc(path, doc, session_id)
        messages = doc["messages"]
        info = self._info_from(session_id, header, len(messages), key)
        return _Cached(key, info, header, body), messages

    def _check_doc(self, path: Path, doc: Any, session_id: str) -> dict[str, Any]:
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
            raise self._corrupt(path, None, "no 'messages' list at the top level")
        messages = doc["messages"]
        try:  # the common case at C speed: every message a dict with a known role
            ok = set(map(dict.get, messages, itertools.repeat("role"))) <= ROLES
        except TypeError:  # not a dict, or an unhashable role
            ok = False
        if not ok:
            try:
                validate_messages(messages)
            except SessionError as exc:
                raise self._corrupt(path, None, str(exc)) from None
        header = {k: v for k, v in doc.items() if k != "messages"}
        header["session_id"] = session_id
        return header

    def _info_from(
        self, session_id: str, header: dict[str, Any], count: int, key: tuple[int, int, int]
    ) -> SessionInfo:
        created = parse_time(header.get("created_at"))
        updated = parse_time(header.get("updated_at"))
        if created is None or updated is None:
            mtime = datetime.fromtimestamp(key[2] / 1e9).astimezone()
            created = created or mtime
            updated = updated or mtime
        meta = header.get("metadata")
        return SessionInfo(
            id=session_id,
            created_at=created,
            updated_at=updated,
            message_count=count,
            title=str(header.get("title") or ""),
            size=key[1],
            version=_version(key),
            metadata=copy.deepcopy(meta) if isinstance(meta, dict) else {},
        )

    @staticmethod
    def _corrupt(path: Path, line: int | None, reason: str) -> SessionCorruptedError:
        where = f"{path}, line {line}" if line else str(path)
        return SessionCorruptedError(
            f"Session file {where}: {reason}. Fix or delete the file "
            f"(SessionManager.delete_session removes it).",
            path=str(path),
            line=line,
        )

    # -- the journal -------------------------------------------------------------------------

    def _jpath(self, session_id: str) -> Path:
        return self.directory / jr.JOURNAL_DIR / (session_id + jr.JOURNAL_SUFFIX)

    def _journal(
        self, session_id: str, toon_info: SessionInfo, messages: list[Message] | None = None
    ) -> jr.JournalState:
        """The journal records extending ``toon_info``'s file; their messages are added to
        ``messages`` when given. Without ``messages``, only what is new since the last read of
        this process is read."""
        base = _base(toon_info)
        prev = self._jcache.get(session_id)
        state = jr.read(self._jpath(session_id), base, toon_info.message_count or 0, prev, messages)
        if state.ino:
            self._jcache[session_id] = state
        else:
            self._jcache.pop(session_id, None)
        return state

    def _with_journal(self, session_id: str, cached: _Cached) -> _State:
        journal = self._journal(session_id, cached.info)
        return _State(cached, journal, _combined(cached, journal))

    # -- reading, continued ------------------------------------------------------------------

    def _read(self, key: str) -> StoredSession | None:
        path = self.path(key)
        for _ in range(100):
            result = self._decode(key, path)
            if result is None:
                with self._mutex:
                    self._cache.pop(key, None)
                return None
            cached, messages = result
            with self._mutex:
                journal = self._journal(key, cached.info, messages)
                self._cache[key] = cached
            if self._unchanged(path, cached.stat_key):
                break  # else a fold replaced the file while its journal was read: again
        return StoredSession(_combined(cached, journal), messages)

    @staticmethod
    def _unchanged(path: Path, key: tuple[int, int, int]) -> bool:
        try:
            return _stat_key(os.stat(path)) == key
        except FileNotFoundError:
            return False

    def _current(self, session_id: str, path: Path) -> _State | None:
        """The session's state, from the cache when the file's stat has not changed since.

        Every write of ours stamps the file with a nanosecond mtime, so (inode, size, mtime)
        identifies one write. A big file is read up to its ``messages[N]:`` line only."""
        for _ in range(100):
            try:
                key = _stat_key(os.stat(path))
            except FileNotFoundError:
                self._cache.pop(session_id, None)
                return None
            cached = self._cache.get(session_id)
            if cached is None or cached.stat_key != key:
                if key[1] >= jr.JOURNAL_AT:
                    try:
                        info, read_key = self._head(session_id, path)
                    except FileNotFoundError:
                        continue
                    cached = _Cached(read_key, info, {}, None, False)
                else:
                    result = self._decode(session_id, path)
                    if result is None:
                        continue
                    cached = result[0]
                self._cache[session_id] = cached
            state = self._with_journal(session_id, cached)
            if self._unchanged(path, cached.stat_key):
                return state
        return state

    def _read_info(self, key: str) -> SessionInfo | None:
        path = self.path(key)
        with self._mutex:
            try:
                state = self._current(key, path)
            except SessionCorruptedError as exc:
                return self._broken_info(key, path, str(exc))
        return state.info if state else None

    def _exists(self, key: str) -> bool:
        return self.path(key).is_file()

    # -- writing (inside _transact) ------------------------------------------------------------

    def _write(
        self,
        session_id: str,
        path: Path,
        header: Header,
        count: int,
        body: str,
    ) -> SessionInfo:
        """Write the whole file atomically."""
        fields: dict[str, Any] = {
            "format": FORMAT,
            "session_id": session_id,
            "title": header.title,
            "created_at": header.created_at.isoformat(),
            "updated_at": header.updated_at.isoformat(),
        }
        if header.metadata:
            fields["metadata"] = header.metadata
        text = encode_header(fields) + f"\nmessages[{count}]:" + ("\n" + body if body else "")
        key = self._atomic_write(path, text.encode("utf-8"))
        info = self._info_from(session_id, fields, count, key)
        self._cache[session_id] = _Cached(key, info, fields, body)
        return copy.copy(info)

    def _atomic_write(self, path: Path, data: bytes) -> tuple[int, int, int]:
        tmp_dir = self.directory / TMP_DIR  # same file system, so os.replace stays atomic
        tmp_dir.mkdir(mode=0o700, exist_ok=True)
        for stale in tmp_dir.glob(f"{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a killed writer; we hold the lock
        tmp = tmp_dir / f"{path.name}.{os.getpid()}.{next(_counter)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with open(fd, "wb", closefd=True) as f:
                f.write(data)
                f.flush()
                now = time.time_ns()  # a precise mtime: the stat key then names this write
                os.utime(f.fileno(), ns=(now, now))
                os.fsync(f.fileno())
                key = _stat_key(os.fstat(f.fileno()))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        return key

    def _journal_write(
        self, session_id: str, state: _State, record: bytes, header: dict[str, Any], added: int
    ) -> SessionInfo:
        """Append one record to the session's journal (dropping a torn tail first), fsynced."""
        jdir = self.directory / jr.JOURNAL_DIR
        if not jdir.is_dir():
            jdir.mkdir(mode=0o700, exist_ok=True)
            _fsync_dir(self.directory)
        new = jr.append(self._jpath(session_id), state.journal, record, header, added)
        self._jcache[session_id] = new
        return _combined(state.toon, new)

    def _drop_journal(self, session_id: str, path: Path) -> None:
        """Remove a journal whose records are in the file now (or name an older file)."""
        self._jcache.pop(session_id, None)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()

    # -- trash ---------------------------------------------------------------------------------

    def _trash_files(self) -> list[tuple[TrashedSession, Path]]:
        try:
            entries = list(os.scandir(self.directory / TRASH_DIR))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for entry in entries:
            stamp, sep, name = entry.name.partition("__")
            if not sep or not stamp.isdigit() or not name.endswith(SUFFIX):
                continue
            session_id = name[: -len(SUFFIX)]
            path = Path(entry.path)
            try:
                info = self._read_header(session_id, path)
                count, title = info.message_count, info.title
            except (SessionError, OSError):
                count, title = None, ""
            deleted = datetime.fromtimestamp(int(stamp) / 1e9, UTC)
            out.append((TrashedSession(session_id, deleted, count, title, entry.path), path))
        out.sort(key=lambda e: e[0].deleted_at, reverse=True)
        return out

    def _trash_entries(self, ns: str, key: str | None) -> list[TrashedSession]:
        return [t for t, _ in self._trash_files() if key is None or t.id == key]

    def _purge(self, entries: list[TrashedSession]) -> None:
        for entry in entries:
            Path(entry.key).unlink(missing_ok=True)

    # -- search ----------------------------------------------------------------------------------

    def _search(self, ns: str, terms: list[list[str]], limit: int) -> list[SearchHit]:
        """SQLite FTS5 index kept in ``<dir>/.index/`` (in memory for a read-only directory)."""
        from .file_search import FileSearchIndex

        if not self.directory.is_dir():  # nothing stored yet: nothing to find, nothing created
            return []
        with self._mutex:
            if self._search_index is None:
                self._search_index = FileSearchIndex(self)
        return self._search_index.search(terms, limit=limit)


class _FileWriter:
    """One session file, inside its lock (see :class:`~scratchy.stores.base.Writer`).

    A file smaller than ``JOURNAL_AT`` is rewritten by every write; a bigger one takes appends
    and header changes in its journal until the journal would pass ``FOLD_AT`` times the file's
    size, when file and journal are folded into a new file (one atomic rewrite)."""

    def __init__(self, store: TOONFileStore, key: str, path: Path) -> None:
        self.store, self.key, self.path = store, key, path
        self._cached: _State | None | bool = False
        self.began = False  # the catalog was told this session is being written
        self.written: SessionInfo | None = None  # what was written (None: removed)

    def _begin(self) -> None:
        """Before the first change of the files: mark the session pending in the catalog."""
        if not self.began:
            self.store._catalog.begin_write(self.key)
            self.began = True

    def current(self) -> SessionInfo | None:
        state = self._state()
        return copy.copy(state.info) if state else None

    def _state(self) -> _State | None:
        if self._cached is False:
            self._cached = self.store._current(self.key, self.path)
        return self._cached  # type: ignore[return-value]

    def messages(self) -> list[Message]:
        stored = self.store._read(self.key)
        return stored.messages if stored else []

    def _body(self) -> str:
        """The encoded items of every stored message: the file's and the journal's."""
        state = self._state()
        if state is None:
            return ""
        cached = state.toon
        if not cached.full:
            result = self.store._decode(self.key, self.path)
            cached = result[0] if result else cached
        if cached.body is None:  # legacy JSON or an unusual layout: encode it afresh
            return "\n".join(encode_message(m) for m in self.messages())
        body = cached.body
        if state.journal.length:
            extra: list[Message] = []
            journal = self.store._journal(self.key, cached.info, extra)
            if journal.length != state.journal.length:  # cannot happen inside the lock
                raise SessionError(f"Session '{self.key}': its journal changed during a write")
            added = "\n".join(encode_message(m) for m in extra)
            body = f"{body}\n{added}" if body and added else body or added
        return body

    def _journaled(self, new: list[Message], header: Header) -> SessionInfo | None:
        """Write ``new`` and ``header`` as a journal record when this file takes them."""
        state = self._state()
        if state is None or state.toon.info.size < jr.JOURNAL_AT:
            return None
        journal = state.journal
        fields = {
            "title": header.title,
            "created_at": header.created_at.isoformat(),
            "updated_at": header.updated_at.isoformat(),
            "metadata": header.metadata,
        }
        record = jr.encode_record(journal.base, journal.total, fields, list(new))
        if journal.length + len(record) > state.toon.info.size * jr.FOLD_AT:
            return None  # time to fold
        self._begin()
        self.written = self.store._journal_write(self.key, state, record, fields, len(new))
        return self.written

    def _fold(self, messages_body: str, count: int, header: Header) -> SessionInfo:
        had_journal = self.store._jpath(self.key)
        self._begin()
        info = self.store._write(self.key, self.path, header, count, messages_body)
        self.store._drop_journal(self.key, had_journal)  # after: a leftover names the old base
        self.written = info
        return info

    def append(self, new: list[Message], header: Header) -> SessionInfo:
        done = self._journaled(new, header)
        if done is not None:
            return done
        state = self._state()
        count = (state.info.message_count or 0) if state else 0
        body = self._body()
        added = "\n".join(encode_message(m) for m in new)
        body = f"{body}\n{added}" if body and added else body or added
        return self._fold(body, count + len(new), header)

    def rewrite(self, messages: list[Message], header: Header) -> SessionInfo:
        body = "\n".join(encode_message(m) for m in messages)
        return self._fold(body, len(messages), header)

    def set_header(self, header: Header) -> SessionInfo:
        done = self._journaled([], header)
        if done is not None:
            return done
        state = self._state()
        count = (state.info.message_count or 0) if state else 0
        return self._fold(self._body(), count, header)

    def trash(self) -> bool:
        store = self.store
        try:
            state = self._state()
        except SessionCorruptedError:  # trashed as it is (the docs' way out of a broken file)
            state = None
        if state is not None and state.journal.length:  # the trash holds whole files
            info = state.info
            header = Header(info.title, info.created_at, info.updated_at, info.metadata)
            self._fold(self._body(), info.message_count or 0, header)
        store._cache.pop(self.key, None)
        self._begin()
        self.written = None
        trash = store.directory / TRASH_DIR
        trash.mkdir(mode=0o700, exist_ok=True)
        try:
            os.replace(self.path, trash / f"{time.time_ns()}__{self.path.name}")
        except FileNotFoundError:
            return False
        _fsync_dir(store.directory)
        store._drop_journal(self.key, store._jpath(self.key))
        return True

    def untrash(self, entry: TrashedSession) -> SessionInfo:
        self._begin()
        self.store._drop_journal(self.key, self.store._jpath(self.key))  # a stale one, if any
        now = time.time_ns()  # a new version: the content is back, after a deletion
        os.utime(entry.key, ns=(now, now))
        os.replace(entry.key, self.path)
        _fsync_dir(self.store.directory)
        info = self.store._read_info(self.key)
        assert info is not None
        self.written = info
        return info

    def fold(self) -> SessionInfo | None:
        """Fold the journal into the file (the session is being closed); None when there is
        no journal to fold."""
        state = self._state()
        if state is None or not state.journal.length:
            return None
        info = state.info
        header = Header(info.title, info.created_at, info.updated_at, info.metadata)
        return self._fold(self._body(), info.message_count or 0, header)

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
on the next write. ``<dir>/.index/catalog.json`` caches the headers for fast listing; each entry is
checked against the file's (inode, size, mtime), so a stale or missing catalog is rebuilt, never
trusted blindly.
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
from ._toon_layout import (
    _fsync_dir,
    _info_from_row,
    _row,
    _stat_key,
    _tz_stamp,
    _version,
    encode_header,
    encode_message,
)
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
    utcnow,
    validate_session_id,
)

FORMAT = "scratchy-session/1"
SUFFIX = "_chat.toon"
CATALOG = "catalog.json"
INDEX_DIR = ".index"
TMP_DIR = ".tmp"
TRASH_DIR = ".trash"
OWNERS_DIR = ".owners"
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
LOCK_TIMEOUT = 30.0
_TRAILING_BLANK_LINES = re.compile(r"(?:\r?\n[ \t\r]*)+\Z")
_MESSAGES_LINE = re.compile(r"^messages\[(\d+)\]:[ \t]*$", re.M)
_counter = itertools.count()


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


class TOONFileStore(BaseStore):
    """Sessions as TOON files in one directory. Thread-safe; safe across processes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)
        self._cache: dict[str, _Cached] = {}  # saves re-reading; checked against the file's stat
        self._catalog: dict[str, list[Any]] | None = None
        self._catalog_key: tuple[int, int, int] | None = None
        self._mutex = threading.RLock()
        self._search_index: Any = None
        self._jcache: dict[str, jr.JournalState] = {}  # journals read, for incremental reads

    def scoped(self, owner: str) -> TOONFileStore:
        """The sessions of ``owner``: files in ``<dir>/.owners/<owner>/``."""
        return TOONFileStore(self.directory / OWNERS_DIR / validate_session_id(owner))

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
                return fn(_FileWriter(self, key, path))
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
            text = _TRAILING_BLANK_LINES.sub("", text)
            try:
                doc = toon.loads(text)
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
        if not all(type(m) is dict and m.get("role") in ROLES for m in messages):
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

    # -- listing -----------------------------------------------------------------------------

    def _broken_info(self, session_id: str, path: Path, error: str) -> SessionInfo:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        when = datetime.fromtimestamp(st.st_mtime).astimezone() if st else utcnow()
        return SessionInfo(
            id=session_id,
            created_at=when,
            updated_at=when,
            message_count=None,
            size=st.st_size if st else 0,
            error=error,
        )

    def _read_header(self, session_id: str, path: Path) -> SessionInfo:
        """Read only the top of a file: header fields and the ``messages[N]:`` count."""
        return self._head(session_id, path)[0]

    def _head(self, session_id: str, path: Path) -> tuple[SessionInfo, tuple[int, int, int]]:
        """:meth:`_read_header` and the stat key of what it read."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            chunk = f.read(4096)
            while True:
                text = chunk.decode("utf-8", errors="replace")
                match = _MESSAGES_LINE.search(text)
                if match or len(chunk) >= st.st_size:
                    break
                chunk += f.read(len(chunk))
        key = _stat_key(st)
        if text.lstrip().startswith("{") or not match:
            result = self._decode(session_id, path)  # legacy JSON or unusual layout: full read
            if result is None:
                raise FileNotFoundError(path)
            return result[0].info, result[0].stat_key
        try:
            header = toon.loads(text[: match.start()]) if match.start() else {}
        except toon.ToonDecodeError as exc:
            raise self._corrupt(path, exc.line, exc.reason) from None
        if not isinstance(header, dict):
            raise self._corrupt(path, 1, "the header is not a TOON object")
        return self._info_from(session_id, header, int(match.group(1)), key), key

    def _list(self, ns: str) -> list[SessionInfo]:
        """Every session's header; corrupted files are flagged."""
        journals = self._journal_stats()  # before the files: a fold replaces the file first
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        with self._mutex:
            catalog = self._load_catalog()
            fresh: dict[str, list[Any]] = {}
            out: list[SessionInfo] = []
            changed = False
            suffix = len(SUFFIX)
            for entry in entries:
                name = entry.name
                if not name.endswith(SUFFIX) or name[0] == ".":
                    continue
                session_id = name[:-suffix]
                row = catalog.get(session_id)
                try:
                    if row is None:
                        validate_session_id(session_id)
                    st = entry.stat()
                except (SessionError, FileNotFoundError):
                    continue
                key = row[0] if row is not None else None
                js = journals.get(session_id)
                if (
                    key is not None
                    and len(row) > 10  # rows of older releases lack the usage totals
                    and key[0] == st.st_ino
                    and key[1] == st.st_size
                    and key[2] == st.st_mtime_ns
                    and (len(key) == 3 if js is None else key[3:] == js)
                ):
                    info = _info_from_row(session_id, row)  # type: ignore[arg-type]
                else:
                    try:
                        info, read_key = self._head(session_id, Path(entry.path))
                        if js is not None:
                            cached = _Cached(read_key, info, {}, None, False)
                            info = self._with_journal(session_id, cached).info
                    except FileNotFoundError:
                        continue
                    except SessionCorruptedError as exc:
                        info = self._broken_info(session_id, Path(entry.path), str(exc))
                    row = _row(info, [st.st_ino, st.st_size, st.st_mtime_ns, *(js or ())])
                    changed = True
                fresh[session_id] = row
                out.append(info)
            if changed or len(fresh) != len(catalog):
                self._save_catalog(fresh)
        return out

    def _journal_stats(self) -> dict[str, list[int]]:
        """(inode, size, mtime) of every journal, by session id."""
        out: dict[str, list[int]] = {}
        try:
            entries = list(os.scandir(self.directory / jr.JOURNAL_DIR))
        except (FileNotFoundError, NotADirectoryError):
            return out
        cut = len(jr.JOURNAL_SUFFIX)
        for entry in entries:
            if entry.name.endswith(jr.JOURNAL_SUFFIX):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                out[entry.name[:-cut]] = [st.st_ino, st.st_size, st.st_mtime_ns]
        return out

    def _load_catalog(self) -> dict[str, list[Any]]:
        path = self.directory / INDEX_DIR / CATALOG
        try:
            key = _stat_key(os.stat(path))
        except FileNotFoundError:
            return {}
        if self._catalog is not None and self._catalog_key == key:
            return self._catalog
        try:
            data = json.loads(path.read_bytes())
            ok = data.get("format") == FORMAT and data.get("tz") == _tz_stamp()
            rows = data["sessions"] if ok else {}
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            rows = {}  # a damaged catalog is only a cache: rebuild it
        self._catalog, self._catalog_key = rows, key
        return rows

    def _save_catalog(self, rows: dict[str, list[Any]]) -> None:
        index_dir = self.directory / INDEX_DIR
        path = index_dir / CATALOG
        tmp = index_dir / f".{CATALOG}.{os.getpid()}.{next(_counter)}.tmp"
        try:
            index_dir.mkdir(mode=0o700, exist_ok=True)  # read-only directory: no catalog, fine
            tmp.write_text(
                json.dumps({"format": FORMAT, "tz": _tz_stamp(), "sessions": rows}),
                encoding="utf-8",
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)  # no fsync: the catalog is derived and checked on every use
            self._catalog, self._catalog_key = rows, _stat_key(os.stat(path))
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


class _FileWriter:
    """One session file, inside its lock (see :class:`~scratchy.stores.base.Writer`).

    A file smaller than ``JOURNAL_AT`` is rewritten by every write; a bigger one takes appends
    and header changes in its journal until the journal would pass ``FOLD_AT`` times the file's
    size, when file and journal are folded into a new file (one atomic rewrite)."""

    def __init__(self, store: TOONFileStore, key: str, path: Path) -> None:
        self.store, self.key, self.path = store, key, path
        self._cached: _State | None | bool = False

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
        return self.store._journal_write(self.key, state, record, fields, len(new))

    def _fold(self, messages_body: str, count: int, header: Header) -> SessionInfo:
        had_journal = self.store._jpath(self.key)
        info = self.store._write(self.key, self.path, header, count, messages_body)
        self.store._drop_journal(self.key, had_journal)  # after: a leftover names the old base
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
        self.store._drop_journal(self.key, self.store._jpath(self.key))  # a stale one, if any
        now = time.time_ns()  # a new version: the content is back, after a deletion
        os.utime(entry.key, ns=(now, now))
        os.replace(entry.key, self.path)
        _fsync_dir(self.store.directory)
        info = self.store._read_info(self.key)
        assert info is not None
        return info

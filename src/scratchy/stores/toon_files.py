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
    local_iso,
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


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _version(key: tuple[int, int, int]) -> str:
    """An opaque version naming one write of a file (its mtime, inode and size, in hex)."""
    return f"{key[2]:x}-{key[0]:x}-{key[1]:x}"


def _tz_stamp() -> list[Any]:
    """Identifies the local time zone, which the catalog's local times depend on."""
    return [time.timezone, time.altzone, list(time.tzname)]


def encode_message(msg: Message) -> str:
    """Encode one message as a TOON list item at depth 1 (``  - role: ...``)."""
    if next(iter(msg)) != "role":
        msg = {"role": msg["role"], **msg}  # type: ignore[typeddict-item]
    lines = toon.dumps(msg).split("\n")
    return "  - " + lines[0] + "".join("\n    " + line for line in lines[1:])


def encode_header(header: dict[str, Any]) -> str:
    """Encode the header fields (everything but ``messages``)."""
    return toon.dumps(header)


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
            text = text.rstrip()  # a final newline (editors add one) or trailing blank lines
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
            f"(`scratchy sessions rm {path.name[: -len(SUFFIX)]}` moves it to the trash).",
            path=str(path),
            line=line,
        )

    def _read(self, key: str) -> StoredSession | None:
        path = self.path(key)
        result = self._decode(key, path)
        if result is None:
            with self._mutex:
                self._cache.pop(key, None)
            return None
        cached, messages = result
        with self._mutex:
            self._cache[key] = cached
        return StoredSession(copy.copy(cached.info), messages)

    def _current(self, session_id: str, path: Path) -> _Cached | None:
        """The file's state, from the cache when the file's stat has not changed since.

        Every write of ours stamps the file with a nanosecond mtime, so (inode, size, mtime)
        identifies one write."""
        try:
            key = _stat_key(os.stat(path))
        except FileNotFoundError:
            self._cache.pop(session_id, None)
            return None
        cached = self._cache.get(session_id)
        if cached is not None and cached.stat_key == key:
            return cached
        result = self._decode(session_id, path)
        if result is None:
            return None
        self._cache[session_id] = result[0]
        return result[0]

    def _read_info(self, key: str) -> SessionInfo | None:
        path = self.path(key)
        with self._mutex:
            try:
                cached = self._current(key, path)
            except SessionCorruptedError as exc:
                return self._broken_info(key, path, str(exc))
        return copy.copy(cached.info) if cached else None

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
            return result[0].info
        try:
            header = toon.loads(text[: match.start()]) if match.start() else {}
        except toon.ToonDecodeError as exc:
            raise self._corrupt(path, exc.line, exc.reason) from None
        if not isinstance(header, dict):
            raise self._corrupt(path, 1, "the header is not a TOON object")
        return self._info_from(session_id, header, int(match.group(1)), key)

    def _list(self, ns: str) -> list[SessionInfo]:
        """Every session's header; corrupted files are flagged."""
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
                if (
                    key is not None
                    and key[0] == st.st_ino
                    and key[1] == st.st_size
                    and key[2] == st.st_mtime_ns
                ):
                    info = _info_from_row(session_id, row)  # type: ignore[arg-type]
                else:
                    try:
                        info = self._read_header(session_id, Path(entry.path))
                    except FileNotFoundError:
                        continue
                    except SessionCorruptedError as exc:
                        info = self._broken_info(session_id, Path(entry.path), str(exc))
                    row = _row(info, [st.st_ino, st.st_size, st.st_mtime_ns])
                    changed = True
                fresh[session_id] = row
                out.append(info)
            if changed or len(fresh) != len(catalog):
                self._save_catalog(fresh)
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
    """One session file, inside its lock (see :class:`~scratchy.stores.base.Writer`)."""

    def __init__(self, store: TOONFileStore, key: str, path: Path) -> None:
        self.store, self.key, self.path = store, key, path
        self._cached: _Cached | None | bool = False

    def current(self) -> SessionInfo | None:
        cached = self._state()
        return cached.info if cached else None

    def _state(self) -> _Cached | None:
        if self._cached is False:
            self._cached = self.store._current(self.key, self.path)
        return self._cached  # type: ignore[return-value]

    def messages(self) -> list[Message]:
        result = self.store._decode(self.key, self.path)
        return result[1] if result else []

    def _body(self) -> str:
        cached = self._state()
        if cached is None:
            return ""
        if cached.body is None:  # legacy JSON or an unusual layout: encode it afresh
            return "\n".join(encode_message(m) for m in self.messages())
        return cached.body

    def append(self, new: list[Message], header: Header) -> SessionInfo:
        cached = self._state()
        count = (cached.info.message_count or 0) if cached else 0
        body = self._body()
        added = "\n".join(encode_message(m) for m in new)
        body = f"{body}\n{added}" if body and added else body or added
        return self.store._write(self.key, self.path, header, count + len(new), body)

    def rewrite(self, messages: list[Message], header: Header) -> SessionInfo:
        body = "\n".join(encode_message(m) for m in messages)
        return self.store._write(self.key, self.path, header, len(messages), body)

    def set_header(self, header: Header) -> SessionInfo:
        cached = self._state()
        count = (cached.info.message_count or 0) if cached else 0
        return self.store._write(self.key, self.path, header, count, self._body())

    def trash(self) -> bool:
        store = self.store
        store._cache.pop(self.key, None)
        trash = store.directory / TRASH_DIR
        trash.mkdir(mode=0o700, exist_ok=True)
        try:
            os.replace(self.path, trash / f"{time.time_ns()}__{self.path.name}")
        except FileNotFoundError:
            return False
        _fsync_dir(store.directory)
        return True

    def untrash(self, entry: TrashedSession) -> SessionInfo:
        now = time.time_ns()  # a new version: the content is back, after a deletion
        os.utime(entry.key, ns=(now, now))
        os.replace(entry.key, self.path)
        _fsync_dir(self.store.directory)
        info = self.store._read_info(self.key)
        assert info is not None
        return info


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _row(info: SessionInfo, key: list[int]) -> list[Any]:
    local = info.local_times or (local_iso(info.created_at), local_iso(info.updated_at))
    return [
        key,
        info.created_at.isoformat(),
        info.updated_at.isoformat(),
        info.message_count,
        info.title,
        info.error,
        local[0],
        local[1],
    ]


def _info_from_row(session_id: str, row: list[Any]) -> SessionInfo:
    key = row[0]
    return SessionInfo(
        session_id,
        datetime.fromisoformat(row[1]),
        datetime.fromisoformat(row[2]),
        row[3],
        row[4],
        key[1],
        _version(key),
        row[5],
        {},
        (row[6], row[7]),
    )

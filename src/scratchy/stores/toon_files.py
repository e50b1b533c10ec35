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
import itertools
import json
import operator
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock

from .. import toon
from ..errors import (
    SessionConflictError,
    SessionCorruptedError,
    SessionError,
    SessionNotFoundError,
)
from ..messages import ROLES, Message, validate_messages
from .base import (
    SearchHit,
    SessionInfo,
    StoredSession,
    TrashedSession,
    local_iso,
    make_title,
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
    return f"{key[0]}-{key[1]}-{key[2]}"


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


class TOONFileStore:
    """Sessions as TOON files in one directory. Thread-safe; safe across processes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)
        self._cache: dict[str, _Cached] = {}
        self._seen: dict[str, str] = {}
        self._catalog: dict[str, list[Any]] | None = None
        self._catalog_key: tuple[int, int, int] | None = None
        self._mutex = threading.RLock()
        self._search: Any = None

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
        self._ensure_dir()
        lock = FileLock(str(self.directory / ".locks" / f"{session_id}.lock"), timeout=LOCK_TIMEOUT)
        with self._mutex, lock:
            yield

    # -- reading -----------------------------------------------------------------------------

    def _read(self, session_id: str, path: Path) -> tuple[_Cached, list[Message]] | None:
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
            metadata=meta if isinstance(meta, dict) else {},
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

    def load(self, session_id: str) -> StoredSession | None:
        """The session, or None when its file does not exist."""
        path = self.path(session_id)
        with self._mutex:
            result = self._read(session_id, path)
            if result is None:
                self._cache.pop(session_id, None)
                return None
            cached, messages = result
            self._remember(session_id, cached)
        return StoredSession(cached.info, messages)

    def _remember(self, session_id: str, cached: _Cached) -> None:
        self._cache[session_id] = cached
        self._seen[session_id] = cached.info.version

    def _current(self, session_id: str, path: Path) -> _Cached | None:
        """The file's state, from the cache when the file has not changed since."""
        try:
            key = _stat_key(os.stat(path))
        except FileNotFoundError:
            self._cache.pop(session_id, None)
            return None
        cached = self._cache.get(session_id)
        if cached is not None and cached.stat_key == key:
            return cached
        result = self._read(session_id, path)
        if result is None:
            return None
        self._cache[session_id] = result[0]
        return result[0]

    def info(self, session_id: str) -> SessionInfo | None:
        """The session's header, or None when it does not exist."""
        path = self.path(session_id)
        with self._mutex:
            try:
                cached = self._current(session_id, path)
            except SessionCorruptedError as exc:
                return self._broken_info(session_id, path, str(exc))
        return cached.info if cached else None

    def exists(self, session_id: str) -> bool:
        """True when the session file exists (even if it is corrupted)."""
        return self.path(session_id).is_file()

    # -- writing -----------------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        messages: list[Message],
        *,
        expected_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Add ``messages`` at the end under the session's lock (creates the session)."""
        new = validate_messages(messages)
        path = self.path(session_id)
        with self._locked(session_id):
            cached = self._current(session_id, path)
            count = (cached.info.message_count or 0) if cached else 0
            if expected_count is not None and count != expected_count:
                raise SessionConflictError(
                    f"Session '{session_id}' has {count} messages, not the {expected_count} "
                    "expected: another writer changed it. Load it again and retry.",
                    session_id=session_id,
                    expected=expected_count,
                    actual=count,
                )
            if cached is not None and cached.body is None:
                stored = self._load_messages(session_id, path)
                return self._write(session_id, path, cached, stored + new, None, metadata)
            body = cached.body if cached else ""
            added = "\n".join(encode_message(m) for m in new)
            if body and added:
                body = body + "\n" + added
            else:
                body = body or added
            return self._write(
                session_id, path, cached, None, (count + len(new), body, new), metadata
            )

    def replace(
        self,
        session_id: str,
        messages: list[Message],
        *,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Rewrite the session; raises ``SessionConflictError`` rather than lose newer data."""
        new = validate_messages(messages)
        path = self.path(session_id)
        with self._locked(session_id):
            try:
                cached = self._current(session_id, path)
            except SessionCorruptedError:
                if not force:
                    raise
                cached = None
            seen = self._seen.get(session_id)
            if (
                cached is not None
                and not force
                and seen is not None
                and seen != cached.info.version
            ):
                stored = self._load_messages(session_id, path)
                if stored != new[: len(stored)]:
                    raise SessionConflictError(
                        f"Session '{session_id}' was changed by another writer since it was read "
                        f"here (it now has {len(stored)} messages): saving would drop them. "
                        "Load it again, use append(), or pass force=True to overwrite.",
                        session_id=session_id,
                        expected=len(new),
                        actual=len(stored),
                    )
            return self._write(session_id, path, cached, new, None, metadata)

    def _load_messages(self, session_id: str, path: Path) -> list[Message]:
        """The stored messages, read without marking them seen (a conflict must persist)."""
        result = self._read(session_id, path)
        return result[1] if result else []

    def _write(
        self,
        session_id: str,
        path: Path,
        cached: _Cached | None,
        full: list[Message] | None,
        appended: tuple[int, str, list[Message]] | None,
        metadata: dict[str, Any] | None,
    ) -> SessionInfo:
        """Write the whole file atomically; exactly one of ``full``/``appended`` is given."""
        now = utcnow()
        old = cached.header if cached else {}
        created = parse_time(old.get("created_at")) or now
        title = str(old.get("title") or "")
        if full is not None:
            count = len(full)
            body = "\n".join(encode_message(m) for m in full)
            title = (
                title if title and any(m.get("role") == "user" for m in full) else make_title(full)
            )
        else:
            assert appended is not None
            count, body, new = appended
            title = title or make_title(new)
        meta = copy.deepcopy(metadata) if metadata is not None else old.get("metadata")
        header: dict[str, Any] = {
            "format": FORMAT,
            "session_id": session_id,
            "title": title,
            "created_at": created.isoformat(),
            "updated_at": now.isoformat(),
        }
        if meta:
            header["metadata"] = meta
        text = encode_header(header) + f"\nmessages[{count}]:" + ("\n" + body if body else "")
        key = self._atomic_write(path, text.encode("utf-8"))
        info = self._info_from(session_id, header, count, key)
        self._remember(session_id, _Cached(key, info, header, body))
        return info

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
                os.fsync(f.fileno())
                key = _stat_key(os.fstat(f.fileno()))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        return key

    def delete(self, session_id: str) -> bool:
        """Move the session file to ``<dir>/.trash/``; False when it did not exist."""
        path = self.path(session_id)
        if not self.directory.is_dir():
            return False
        with self._locked(session_id):
            self._cache.pop(session_id, None)
            self._seen.pop(session_id, None)
            trash = self.directory / TRASH_DIR
            trash.mkdir(mode=0o700, exist_ok=True)
            try:
                os.replace(path, trash / f"{time.time_ns()}__{path.name}")
            except FileNotFoundError:
                return False
            _fsync_dir(self.directory)
            return True

    def _trash_entries(self) -> list[tuple[TrashedSession, Path]]:
        try:
            entries = list(os.scandir(self.directory / TRASH_DIR))
        except FileNotFoundError:
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
            out.append((TrashedSession(session_id, deleted, count, title, entry.name), path))
        out.sort(key=lambda e: e[0].deleted_at, reverse=True)
        return out

    def list_trash(self) -> list[TrashedSession]:
        """Deleted sessions, most recently deleted first."""
        return [t for t, _ in self._trash_entries()]

    def restore(self, session_id: str) -> SessionInfo:
        """Move the most recently deleted ``session_id`` back out of the trash."""
        path = self.path(session_id)
        with self._locked(session_id):
            found = [p for t, p in self._trash_entries() if t.id == session_id]
            if not found:
                raise SessionNotFoundError(
                    f"Session '{session_id}' is not in the trash (see list_trash())"
                )
            if path.exists():
                raise SessionConflictError(
                    f"Cannot restore '{session_id}': a session with that id exists; delete or "
                    "rename it first",
                    session_id=session_id,
                    expected=0,
                    actual=-1,
                )
            os.utime(found[0])  # a new version: the content is back, after a deletion
            os.replace(found[0], path)
            _fsync_dir(self.directory)
            cached = self._current(session_id, path)
        assert cached is not None
        return cached.info

    def purge(
        self, session_id: str | None = None, *, older_than: timedelta | None = None
    ) -> list[TrashedSession]:
        """Delete trashed sessions for good (one id's, older ones, or all); returns them."""
        if session_id is not None:
            validate_session_id(session_id)
        cutoff = utcnow() - older_than if older_than is not None else None
        removed = []
        for trashed, path in self._trash_entries():
            if session_id is not None and trashed.id != session_id:
                continue
            if cutoff is not None and trashed.deleted_at > cutoff:
                continue
            path.unlink(missing_ok=True)
            removed.append(trashed)
        return removed

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Full-text search (SQLite FTS5 index kept in ``<dir>/.index/``, rebuilt when stale)."""
        from .file_search import FileSearchIndex

        if self._search is None:
            self._search = FileSearchIndex(self)
        return self._search.search(query, limit=limit)

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
            result = self._read(session_id, path)  # legacy JSON or unusual layout: full read
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

    def list(self) -> list[SessionInfo]:
        """Every session's header, newest activity first; corrupted files are flagged."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
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
        out.sort(key=_updated, reverse=True)
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
        index_dir.mkdir(mode=0o700, exist_ok=True)
        path = index_dir / CATALOG
        tmp = index_dir / f".{CATALOG}.{os.getpid()}.{next(_counter)}.tmp"
        try:
            tmp.write_text(
                json.dumps({"format": FORMAT, "tz": _tz_stamp(), "sessions": rows}),
                encoding="utf-8",
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)  # no fsync: the catalog is derived and checked on every use
            self._catalog, self._catalog_key = rows, _stat_key(os.stat(path))
        except OSError:
            tmp.unlink(missing_ok=True)


_updated = operator.attrgetter("updated_at")


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
        f"{key[0]}-{key[1]}-{key[2]}",
        row[5],
        {},
        (row[6], row[7]),
    )

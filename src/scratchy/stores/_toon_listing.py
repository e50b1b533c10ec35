"""Listing and paging of the TOON file store, over its catalog (see :mod:`._catalog`).

A mixin of :class:`~scratchy.stores.toon_files.TOONFileStore`: the full listing checks every
file's ``stat`` against the catalog and repairs what differs; a page is read from the catalog's
activity index, its rows checked against their files, after the cheap checks of
:mod:`._catalog` (directory time, boot id, pending writes) said the catalog is current.
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from .. import toon
from ..errors import SessionCorruptedError, SessionError
from . import _journal as jr
from ._catalog import Catalog, boot_id, settled, sort_key
from ._toon_layout import _info_from_row, _row, _tz_stamp
from .base import SessionInfo, _page_key, utcnow, validate_session_id

if TYPE_CHECKING:
    from .toon_files import TOONFileStore

SUFFIX = "_chat.toon"
_HEAD_MESSAGES = b"\nmessages["
_DICT = operator.itemgetter(3)


_Entry = list[Any]
"""One listed session: [sort key, id, [header or None, created_at, updated_at, version,
metadata], ``header.as_dict()``], shared by listings (the header is built when first needed).
Lists, not tuples: the snapshot's JSON decodes straight into them."""
LISTING = "listing.json"
"""A snapshot of the last full listing (``.index/listing.json``): lets a new process list
without reading the catalog; every entry is checked against its file's ``stat`` like a row."""


def _entry(info: SessionInfo, key_sort: int) -> _Entry:
    extra = [info, info.created_at.isoformat(), info.updated_at.isoformat(), info.version]
    extra.append(info.metadata)  # usage and cost totals included: listings show them
    return [key_sort, info.id, extra, info.as_dict()]


def _entry_info(e: _Entry) -> SessionInfo:
    extra = e[2]
    if extra[0] is None:
        d = e[3]
        extra[0] = SessionInfo(
            e[1], datetime.fromisoformat(extra[1]), datetime.fromisoformat(extra[2]),
            d["message_count"], d["title"], d["size"], extra[3], d["error"], dict(extra[4]),
            (d["created_at"], d["updated_at"]),
        )  # fmt: skip
    return extra[0]  # type: ignore[no-any-return]


def _clone(i: SessionInfo) -> SessionInfo:
    """A copy a caller may change (faster than ``copy.copy`` of a slotted dataclass)."""
    meta = dict(i.metadata) if i.metadata else {}
    return SessionInfo(
        i.id, i.created_at, i.updated_at, i.message_count, i.title, i.size, i.version, i.error,
        meta, i.local_times,
    )  # fmt: skip


def _tz() -> str:
    return json.dumps(_tz_stamp())


class ListingMixin:
    """``_list``, ``_page`` and the catalog upkeep of the TOON file store."""

    directory: Path
    _catalog: Catalog
    _known: dict[str, list[Any]]  # id -> [stat key (file's, then journal's), entry]
    _known_tz: str
    _sorted: list[_Entry] | None = None  # the entries of _known, sorted (None: to sort)
    _listing_stale: bool = True

    # -- stats ---------------------------------------------------------------------------------

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

    def _disk_key(self, session_id: str) -> list[int] | None:
        """The catalog key of a session now: its file's (inode, size, mtime) and its
        journal's, if any; None when the file does not exist."""
        try:
            st = os.stat(self.directory / (session_id + SUFFIX))
        except FileNotFoundError:
            return None
        key = [st.st_ino, st.st_size, st.st_mtime_ns]
        jpath = self.directory / jr.JOURNAL_DIR / (session_id + jr.JOURNAL_SUFFIX)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            js = os.stat(jpath)
            key += [js.st_ino, js.st_size, js.st_mtime_ns]
        return key

    def _check(self, session_id: str, key: list[Any] | None) -> bool:
        return self._disk_key(session_id) == key

    @contextlib.contextmanager
    def _free_locks(self, ids: list[str]) -> Iterator[list[str]]:
        """Hold the write locks of those of ``ids`` no writer holds now (a pending mark of a
        session whose lock is free was left by a killed writer)."""
        held: list[FileLock] = []
        free: list[str] = []
        try:
            for sid in ids:
                lock = FileLock(str(self.directory / ".locks" / f"{sid}.lock"), timeout=0)
                try:
                    lock.acquire()
                except (Timeout, OSError):
                    continue
                held.append(lock)
                free.append(sid)
            yield free
        finally:
            for lock in held:
                lock.release()

    # -- reading one header ----------------------------------------------------------------------

    def _info_of(
        self: TOONFileStore, session_id: str, path: Path, journal: list[int] | None
    ) -> SessionInfo:
        """The header of one file and its journal (corrupted files flagged)."""
        from .toon_files import _Cached

        try:
            info, read_key = self._head(session_id, path)
            if journal is not None:
                cached = _Cached(read_key, info, {}, None, False)
                info = self._with_journal(session_id, cached).info
        except SessionCorruptedError as exc:
            info = self._broken_info(session_id, path, str(exc))
        return info

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

    def _read_header(self: TOONFileStore, session_id: str, path: Path) -> SessionInfo:
        """Read only the top of a file: header fields and the ``messages[N]:`` count."""
        return self._head(session_id, path)[0]

    def _head(
        self: TOONFileStore, session_id: str, path: Path
    ) -> tuple[SessionInfo, tuple[int, int, int]]:
        """:meth:`_read_header` and the stat key of what it read."""
        from .toon_files import _MESSAGES_LINE, _stat_key

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

    # -- the full listing ------------------------------------------------------------------------

    def _list(self: TOONFileStore, ns: str) -> list[SessionInfo]:
        """Every session's header, newest activity first (corrupted files flagged)."""
        return [_clone(_entry_info(e)) for e in self._scan()]

    def list(self: TOONFileStore) -> list[SessionInfo]:
        """Every session's header, newest activity first; corrupted ones flagged with
        ``error`` (each checked against its file)."""
        return self._list("")

    def list_dicts(self: TOONFileStore) -> list[dict[str, Any]]:
        """``[info.as_dict() for info in self.list()]``, without building the headers again."""
        entries = self._scan()
        paused = gc.isenabled()
        gc.disable()  # 10,000s of new dicts, no cycles: the collector would rescan the cache
        try:
            return list(map(dict, map(_DICT, entries)))
        finally:
            if paused:
                gc.enable()

    def _scan(self: TOONFileStore) -> list[_Entry]:
        """Every session, newest first, as shared entries (callers copy what they return),
        each checked against its file's ``stat``: from what this store already knows, else
        the catalog, else the file; the catalog is repaired where it differs."""
        try:
            dir_mtime = os.stat(self.directory).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return []
        seen_at = time.time_ns()
        marks = self._catalog.stale_marks()
        journals = self._journal_stats()  # before the files: a fold replaces the file first
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        paused = gc.isenabled()
        gc.disable()  # many small objects, no cycles: the collector would only rescan them
        try:
            with self._mutex:
                return self._scan_entries(entries, journals, marks, dir_mtime, seen_at)
        finally:
            if paused:
                gc.enable()

    def _scan_entries(
        self: TOONFileStore,
        entries: list[os.DirEntry[str]],
        journals: dict[str, list[int]],
        marks: list[Path],
        dir_mtime: int,
        seen_at: int,
    ) -> list[_Entry]:
        catalog = self._catalog
        usable = catalog.db(create=True) is not None
        meta = catalog.meta() if usable else {}
        tz = _tz()
        if self._known_tz != tz:
            self._known, self._known_tz, self._sorted = {}, tz, None
        known = self._known
        if not known:
            known.update(self._load_listing(tz))
        pending = catalog.pending() if usable else set()
        out: list[_Entry] = []
        misses: list[tuple[str, str, list[int]]] = []
        cut = len(SUFFIX)
        for entry in entries:
            name = entry.name
            if not name.endswith(SUFFIX) or name[0] == ".":
                continue
            session_id = name[:-cut]
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            key = [st.st_ino, st.st_size, st.st_mtime_ns]
            if journals and session_id in journals:
                key += journals[session_id]
            hit = known.get(session_id)
            if hit is not None and hit[0] == key and session_id not in pending:
                out.append(hit[1])
            else:
                misses.append((session_id, entry.path, key))
        fixes: list[tuple[str, list[Any], int]] = []
        rows: dict[str, list[Any]] = {}
        if misses and usable:
            rows, pending = catalog.everything()
            if meta.get("tz") != tz:
                rows = {}
        for session_id, path, key in misses:
            row = rows.get(session_id)
            if row is not None and row[0] == key and session_id not in pending:
                info = _info_from_row(session_id, row)
            else:
                try:
                    if row is None:
                        validate_session_id(session_id)
                    info = self._info_of(session_id, Path(path), journals.get(session_id))
                except (SessionError, FileNotFoundError):
                    continue
                fixes.append((session_id, _row(info, list(key)), sort_key(info.updated_at)))
            item = _entry(info, sort_key(info.updated_at))
            known[session_id] = [key, item]
            out.append(item)
        if len(known) > len(out):
            present = {e[1] for e in out}
            for session_id in [k for k in known if k not in present]:
                del known[session_id]
        elif not misses and self._sorted is not None and len(self._sorted) == len(out):
            out = self._sorted  # the same entries as last time: the same order
        if out is not self._sorted:
            out.sort(reverse=True)  # (sort key, id): BaseStore's (updated_at, id) order
            self._sorted = out
        if misses or self._listing_stale:
            self._save_listing(tz)
        if not usable:
            return out
        gone = [sid for sid in rows if sid not in known]
        new_meta = {
            "tz": tz,
            "boot": boot_id(),
            "names_mtime": str(dir_mtime),
            "names_seen": str(seen_at),
        }
        recorded = all(meta.get(k) == v for k, v in new_meta.items() if k != "names_seen")
        if (
            fixes
            or gone
            or pending
            or marks
            or not recorded
            or not settled(dir_mtime, int(meta.get("names_seen") or 0))
        ):
            with self._free_locks(sorted(pending)) as dead:
                catalog.repair(fixes, gone, self._check, new_meta, clear_pending=dead)
            for mark in marks:
                mark.unlink(missing_ok=True)
        return out

    def _load_listing(self, tz: str) -> dict[str, list[Any]]:
        """The entries of the last full listing's snapshot (unchecked: the caller checks
        each against its file), {} when there is none or it is of another time zone."""
        self._listing_stale = True
        try:
            data = json.loads((self.directory / ".index" / LISTING).read_bytes())
            if data.get("tz") != tz or data.get("format") != 4:
                return {}
            rows = data["rows"]  # [[key, entry], ...], newest first: see _save_listing
            if not all(
                type(r[0]) is list and type(r[1][2]) is list and type(r[1][3]) is dict for r in rows
            ):
                return {}
            out = {r[1][1]: r for r in rows}
            self._sorted = sorted((r[1] for r in rows), reverse=True)  # linear: sorted already
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return {}
        self._listing_stale = False
        return out

    def _save_listing(self, tz: str) -> None:
        """Write the snapshot of what this listing saw, in its order (atomically, no fsync:
        derived). Its rows are the entries themselves, decoded as they are by the next
        process (the cached header left out)."""
        known = self._known
        rows = [[known[e[1]][0], [e[0], e[1], [None, *e[2][1:]], e[3]]] for e in self._sorted or ()]
        index = self.directory / ".index"
        tmp = index / f".{LISTING}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            tmp.write_text(
                json.dumps({"format": 4, "tz": tz, "rows": rows}, ensure_ascii=False),
                encoding="utf-8",
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, index / LISTING)
            self._listing_stale = False
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # -- pages -----------------------------------------------------------------------------------

    def _page(
        self: TOONFileStore, ns: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[SessionInfo]:
        """A page from the catalog's activity index (see :mod:`._catalog` for when it is
        trusted); every row of the page is checked against its file."""
        if not self.directory.is_dir():
            return []
        cursor = (sort_key(after[0]), after[1]) if after is not None else None
        catalog = self._catalog
        if catalog.db(create=True) is None:  # a read-only directory: the full listing it is
            return super()._page(ns, limit, after)  # type: ignore[misc]
        for _ in range(5):
            meta = catalog.meta()
            if meta.get("boot") != boot_id() or meta.get("tz") != _tz() or catalog.stale_marks():
                every = self._list(ns)  # checks every file and records what it saw
                meta = catalog.meta()
                if meta.get("boot") != boot_id() or meta.get("tz") != _tz():  # not recorded
                    every.sort(key=_page_key, reverse=True)
                    return [r for r in every if after is None or _page_key(r) < after][:limit]
            try:
                dir_mtime = os.stat(self.directory).st_mtime_ns
            except FileNotFoundError:
                return []
            if str(dir_mtime) != meta.get("names_mtime") or not settled(
                dir_mtime, int(meta.get("names_seen") or 0)
            ):
                self._reconcile_names()
            rows, pending = catalog.page(limit, cursor)
            journals = self._journal_stats()
            out: list[SessionInfo] = []
            stale: list[str] = []
            for session_id, text in rows:
                row = json.loads(text)
                if self._check_row(session_id, row[0], journals):
                    out.append(_info_from_row(session_id, row))
                else:
                    stale.append(session_id)
            if stale:
                self._repair_ids(stale, journals)
                continue
            if pending:
                out += self._pending_infos(pending, after)
                out.sort(key=_page_key, reverse=True)
            return out[:limit]
        return super()._page(ns, limit, after)  # type: ignore[misc]  # changing all along

    def _check_row(self, session_id: str, key: list[int], journals: dict[str, list[int]]) -> bool:
        try:
            st = os.stat(self.directory / (session_id + SUFFIX))
        except FileNotFoundError:
            return False
        js = journals.get(session_id)
        return (
            key[0] == st.st_ino
            and key[1] == st.st_size
            and key[2] == st.st_mtime_ns
            and (len(key) == 3 if js is None else key[3:] == js)
        )

    def _pending_infos(
        self: TOONFileStore, pending: list[str], after: tuple[datetime, str] | None
    ) -> list[SessionInfo]:
        """Sessions being written (or left pending by a killed writer), read from their files;
        the marks of killed writers are cleared."""
        out = []
        for session_id in pending:
            info = self._read_info(session_id)
            if info is not None and (after is None or _page_key(info) < after):
                out.append(info)
        with self._free_locks(pending) as dead:
            if dead:
                self._repair_ids(dead, self._journal_stats(), clear=dead)
        return out

    def _repair_ids(
        self: TOONFileStore,
        ids: list[str],
        journals: dict[str, list[int]],
        clear: list[str] | None = None,
    ) -> None:
        """Re-read ``ids`` from their files and store their rows (drop them when gone)."""
        fixes, gone = [], []
        with self._mutex:
            for session_id in ids:
                path = self.directory / (session_id + SUFFIX)
                try:
                    st = os.stat(path)
                    info = self._info_of(session_id, path, journals.get(session_id))
                except FileNotFoundError:
                    gone.append(session_id)
                    continue
                key = [st.st_ino, st.st_size, st.st_mtime_ns, *(journals.get(session_id) or ())]
                fixes.append((session_id, _row(info, key), sort_key(info.updated_at)))
        self._catalog.repair(fixes, gone, self._check, clear_pending=clear or ())

    def _reconcile_names(self: TOONFileStore) -> None:
        """Make the catalog's ids match the directory's file names (files copied in or removed
        behind its back), and record the directory time this was true at."""
        dir_mtime = os.stat(self.directory).st_mtime_ns
        seen_at = time.time_ns()
        cut = len(SUFFIX)
        names = {n[:-cut] for n in os.listdir(self.directory) if n.endswith(SUFFIX) and n[0] != "."}
        ids, pending = self._catalog.ids()
        new = []
        for session_id in names - ids - pending:
            try:
                new.append(validate_session_id(session_id))
            except SessionError:
                continue
        gone = list(ids - names - pending)
        journals = self._journal_stats() if new else {}
        fixes = []
        with self._mutex:
            for session_id in new:
                path = self.directory / (session_id + SUFFIX)
                try:
                    st = os.stat(path)
                    info = self._info_of(session_id, path, journals.get(session_id))
                except FileNotFoundError:
                    continue
                key = [st.st_ino, st.st_size, st.st_mtime_ns, *(journals.get(session_id) or ())]
                fixes.append((session_id, _row(info, key), sort_key(info.updated_at)))
        meta = {"names_mtime": str(dir_mtime), "names_seen": str(seen_at)}
        self._catalog.repair(fixes, gone, self._check, meta)

    # -- writers -----------------------------------------------------------------------------------

    def _catalog_written(self, session_id: str, info: SessionInfo | None) -> None:
        """After a write (inside the session's lock): store its row, clear its mark."""
        key = self._disk_key(session_id) if info is not None else None
        if info is None or key is None:
            self._catalog.end_write(session_id, None, 0)
        else:
            self._catalog.end_write(session_id, _row(info, key), sort_key(info.updated_at))

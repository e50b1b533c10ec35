"""The TOON file store's listing catalog: pages from the catalog, kept by every writer, and
still right after changes made behind its back (files copied in, deleted, overwritten, killed
writers, several processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchy import Agent, SessionManager
from scratchy.stores import _catalog
from scratchy.stores import _journal as jr
from scratchy.stores.toon_files import TOONFileStore


def msgs(n: int, tag: str = "m") -> list[dict]:
    return [{"role": "user", "content": f"{tag} {i}"} for i in range(n)]


def page_all(store: TOONFileStore, limit: int = 3) -> list[tuple[str, int | None]]:
    """Every session through pages of ``limit``."""
    out, cursor = [], None
    while True:
        page = store.list_page(limit=limit, cursor=cursor)
        out += [(i.id, i.message_count) for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return out


def pending(d: Path) -> list[str]:
    """Sessions marked as being written (``.index/pending/<id>``)."""
    marks = d / ".index" / "pending"
    return sorted(p.name for p in marks.iterdir()) if marks.is_dir() else []


def settle(store: TOONFileStore) -> None:
    """Let the directory time age past the settling margin and have a page record it."""
    time.sleep(_catalog.SETTLE_NS / 1e9 + 0.02)
    store.list_page(limit=1)


def test_pages_come_from_the_catalog_in_activity_order(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    for i in range(7):
        store.replace(f"s{i}", msgs(i + 1))
    store.append("s2", msgs(1, "again"))
    expected = [(i.id, i.message_count) for i in TOONFileStore(tmp_path).list()]
    assert expected[0] == ("s2", 4)
    assert page_all(TOONFileStore(tmp_path)) == expected
    settle(store)
    reader = TOONFileStore(tmp_path)
    calls: list[str] = []
    reader._reconcile_names = lambda: calls.append("names")  # type: ignore[method-assign]
    reader._list = lambda ns: calls.append("full") or []  # type: ignore[method-assign,func-returns-value]
    assert page_all(reader) == expected and calls == []  # served by the catalog alone
    assert pending(tmp_path) == []


def test_files_copied_in_deleted_or_overwritten_behind_its_back_are_seen(tmp_path: Path) -> None:
    d = tmp_path / "s"
    store = TOONFileStore(d)
    store.replace("old", msgs(2))
    store.replace("new", msgs(3))
    settle(store)
    assert [i.id for i in store.list_page(limit=5).items] == ["new", "old"]
    # a user copies a session file in from elsewhere (newer activity: first)
    other = TOONFileStore(tmp_path / "elsewhere")
    other.replace("copied", msgs(5))
    shutil.copy(tmp_path / "elsewhere" / "copied_chat.toon", d / "copied_chat.toon")
    page = TOONFileStore(d).list_page(limit=5).items
    assert [(i.id, i.message_count) for i in page] == [("copied", 5), ("new", 3), ("old", 2)]
    settle(store)
    os.unlink(d / "new_chat.toon")  # a user deletes one
    assert [i.id for i in store.list_page(limit=5).items] == ["copied", "old"]
    settle(store)
    # a user overwrites one in place (same name, same inode: the directory does not change)
    with open(d / "old_chat.toon", "r+b") as f:
        f.truncate(0)
        f.write((tmp_path / "elsewhere" / "copied_chat.toon").read_bytes())
    page = TOONFileStore(d).list_page(limit=5).items  # on the page: shown as it is now
    assert {i.id: i.message_count for i in page} == {"copied": 5, "old": 5}
    assert [(i.id, i.message_count) for i in store.list()] == [
        (i.id, i.message_count) for i in TOONFileStore(d).list_page(limit=5).items
    ]
    # a broken file copied in is listed, flagged
    (d / "broken_chat.toon").write_text('title: "unterminated\nmessages[0]:\n')
    rows = {i.id: i for i in TOONFileStore(d).list_page(limit=5).items}
    assert rows["broken"].error and rows["broken"].message_count is None


def test_a_writer_killed_before_updating_the_catalog_is_repaired(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    store.replace("a", msgs(2))
    store.replace("b", msgs(2))
    settle(store)
    killed = TOONFileStore(tmp_path)
    killed._catalog_written = lambda *a: None  # type: ignore[method-assign]  # dies there
    killed.append("a", msgs(3, "more"))
    assert pending(tmp_path) == ["a"]
    reader = TOONFileStore(tmp_path)
    assert [(i.id, i.message_count) for i in reader.list_page(limit=5).items] == [
        ("a", 5),
        ("b", 2),
    ]
    assert pending(tmp_path) == []  # its lock was free: the mark of a dead writer is cleared
    assert [(i.id, i.message_count) for i in TOONFileStore(tmp_path).list_page(limit=5).items] == [
        ("a", 5),
        ("b", 2),
    ]


def test_a_write_in_progress_is_read_from_its_files(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    store.replace("a", msgs(2))
    store.replace("b", msgs(1))
    store._catalog.begin_write("a")  # as a writer holding a's lock would
    with store._locked("a"):
        assert [i.id for i in TOONFileStore(tmp_path).list_page(limit=5).items] == ["b", "a"]
        assert pending(tmp_path) == ["a"]  # a live writer's mark is left alone
    store._catalog_written("a", store.info("a"))
    assert pending(tmp_path) == []


def catalog_row(d: Path, sid: str) -> tuple[int, str]:
    db = sqlite3.connect(d / ".index" / "catalog.sqlite")
    try:
        return db.execute("SELECT upd, row FROM sessions WHERE id=?", (sid,)).fetchone()
    finally:
        db.close()


def set_catalog(d: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(d / ".index" / "catalog.sqlite")
    db.execute(sql, args)
    db.commit()
    db.close()


def test_catalog_commits_lost_in_a_reboot_are_caught(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    store.replace("a", msgs(2))
    store.replace("b", msgs(1))
    before = catalog_row(tmp_path, "a")
    store.append("a", msgs(1, "later"))  # a is the newest now
    settle(store)
    assert [i.id for i in store.list_page(limit=1).items] == ["a"]
    # a power loss took the catalog's last commit for a (its row names the older file)
    set_catalog(tmp_path, "UPDATE sessions SET upd=?, row=? WHERE id='a'", *before)
    set_catalog(tmp_path, "UPDATE meta SET v='another boot' WHERE k='boot'")
    assert [(i.id, i.message_count) for i in TOONFileStore(tmp_path).list_page(limit=1).items] == [
        ("a", 3)
    ]
    # the same lost commit in the same boot (the kernel kept the page cache) cannot happen;
    # a time zone change makes every stored local time wrong: checked in full too
    set_catalog(tmp_path, "UPDATE sessions SET upd=?, row=? WHERE id='a'", *before)
    set_catalog(tmp_path, "UPDATE meta SET v='[0]' WHERE k='tz'")
    assert [(i.id, i.message_count) for i in TOONFileStore(tmp_path).list_page(limit=1).items] == [
        ("a", 3)
    ]


WRITER = r"""
import sys
from scratchy.stores.toon_files import TOONFileStore
store = TOONFileStore(sys.argv[1])
worker, count = sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
for i in range(count):
    sid = f"{worker}-{i % 4}"
    store.append(sid, [{"role": "user", "content": f"{worker} {i}"}])
    if i % 7 == 3:
        store.delete(f"{worker}-{(i + 1) % 4}")
    print(sid, flush=True)
"""


def test_processes_writing_keep_the_catalog_right(tmp_path: Path) -> None:
    d = tmp_path / "s"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(d), f"w{w}", "40"], stdout=subprocess.PIPE, text=True
        )
        for w in range(3)
    ]
    victim = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(d), "k", "100000"], stdout=subprocess.PIPE, text=True
    )
    assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
    reader = TOONFileStore(d)
    for _ in range(10):  # pages while they write
        page_all(reader, 5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in procs:
        assert p.wait(timeout=120) == 0
    truth = sorted(
        (p.name[: -len("_chat.toon")], len(TOONFileStore(d).load(p.name[:-10]).messages))  # type: ignore[union-attr]
        for p in d.glob("*_chat.toon")
    )
    assert sorted(page_all(TOONFileStore(d), 4)) == truth
    assert sorted((i.id, i.message_count) for i in TOONFileStore(d).list()) == truth
    assert sorted(page_all(TOONFileStore(d), 4)) == truth
    assert pending(d) == []


# -- fold on close -----------------------------------------------------------------------------


def big(store: TOONFileStore, sid: str = "big") -> list[dict]:
    history: list[dict] = []
    while len(json.dumps(history)) < jr.JOURNAL_AT + 10_000:
        history.append({"role": "tool", "tool_call_id": "c", "content": "r" * 1000})
    store.replace(sid, history)
    return history


def test_closing_a_session_folds_its_journal(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    history = big(store) + msgs(3, "turn")
    store.append("big", msgs(3, "turn"))
    journal = tmp_path / jr.JOURNAL_DIR / "big.jsonl"
    assert journal.exists()
    sm = SessionManager(store=TOONFileStore(tmp_path))
    version = store.info("big").version  # type: ignore[union-attr]
    sm.close_session("big")
    assert not journal.exists()
    from scratchy import toon

    doc = toon.loads((tmp_path / "big_chat.toon").read_text())
    assert doc["messages"] == history  # the file alone holds every message now
    info = store.info("big")
    assert info is not None and info.version != version and info.message_count == len(history)
    assert store.list_page(limit=1).items[0].message_count == len(history)
    sm.close_session("big")  # nothing to fold: nothing written
    assert store.info("big").version == info.version  # type: ignore[union-attr]
    sm.close_session("absent")


async def test_agent_aclose_folds_the_sessions_it_used(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    history = big(store)
    agent = Agent(model="fake:", session_manager=SessionManager(store=store))
    await agent.chat("hello", session_id="big")
    assert (tmp_path / jr.JOURNAL_DIR / "big.jsonl").exists()
    await agent.aclose()
    assert not (tmp_path / jr.JOURNAL_DIR / "big.jsonl").exists()
    stored = TOONFileStore(tmp_path).load("big")
    assert stored is not None and stored.messages[: len(history)] == history
    assert [m["content"] for m in stored.messages[len(history) :]] == [
        "hello",
        "You said: hello",
    ]


def test_the_repl_folds_a_session_it_leaves_and_on_exit(tmp_path: Path) -> None:
    from tests.test_repl import Term

    d = tmp_path / "scratchy" / "session_history"
    history = big(TOONFileStore(d))
    journal = d / jr.JOURNAL_DIR / "big.jsonl"
    t = Term(tmp_path, "--session", "big")
    t.wait_prompt("big")
    t.send("hello", "big")
    assert journal.exists()  # the turn went to the journal
    assert t.send("/new other", "other") == "✨ Created new session: 'other'"
    assert not journal.exists()  # left: folded
    t.send("/resume big", "big")
    t.send("again", "big")
    assert journal.exists()
    assert "👋" in t.close()
    assert not journal.exists()  # exit: folded
    from scratchy import toon

    doc = toon.loads((d / "big_chat.toon").read_text())
    assert doc["messages"][: len(history)] == history
    assert [m["content"] for m in doc["messages"][len(history) :]] == [
        "hello",
        "You said: hello",
        "again",
        "You said: again",
    ]


IDS = ["a", "b", "c", "d"]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "replace", "delete", "copy_in", "rm", "other_append"]),
        st.sampled_from(IDS),
        st.integers(1, 3),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_pages_always_match_the_files(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    """Whatever mix of writes (two store objects, as two processes) and changes behind the
    catalog's back (files copied in, deleted), paging through a fresh store, a kept one, and
    the full listing all agree with the files."""
    root = tmp_path_factory.mktemp("prop")
    d, elsewhere = root / "s", root / "elsewhere"
    one, other, reader = TOONFileStore(d), TOONFileStore(d), TOONFileStore(d)
    source = TOONFileStore(elsewhere)
    for n, (op, sid, k) in enumerate(ops):
        path = d / f"{sid}_chat.toon"
        if op == "append":
            one.append(sid, msgs(k, f"{op}{n}"))
        elif op == "other_append":
            other.append(sid, msgs(k, f"{op}{n}"))
        elif op == "replace":
            other.replace(sid, msgs(k, f"{op}{n}"))
        elif op == "delete":
            one.delete(sid)
        elif op == "copy_in" and not path.exists():
            source.replace("t", msgs(k, f"copy{n}"))
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(elsewhere / "t_chat.toon", path)
        elif op == "rm":
            path.unlink(missing_ok=True)
        truth = [(i.id, i.message_count) for i in TOONFileStore(d).list()]
        assert sorted(truth) == sorted(
            (p.name[:-10], len(TOONFileStore(d).load(p.name[:-10]).messages))  # type: ignore[union-attr]
            for p in (d.glob("*_chat.toon") if d.is_dir() else [])
        )
        assert page_all(TOONFileStore(d), 2) == truth
        assert page_all(reader, 3) == truth

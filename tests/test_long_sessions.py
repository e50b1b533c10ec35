"""Long-lived sessions: trash and retention, fork, full-text search (file store)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from scratchy import SessionManager
from scratchy.errors import SessionConflictError, SessionNotFoundError, UsageError

CHAT = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "How do I write a factorial function in Python?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "write_file", "arguments": '{"path": "fact.py"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "write_file", "content": "wrote fact.py"},
    {"role": "assistant", "content": "Here is a recursive factorial: def fact(n): ..."},
]


@pytest.fixture
def sm(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path / "s")


def test_delete_moves_to_trash_and_restore_brings_back(sm: SessionManager) -> None:
    sm.save_session("a", CHAT)
    assert sm.delete_session("a") is True
    assert not sm.session_exists("a") and sm.list_sessions() == []
    [trashed] = sm.list_trash()
    assert trashed.id == "a" and trashed.message_count == 5 and trashed.title.startswith("How")
    info = sm.restore_session("a")
    assert info.message_count == 5 and sm.load_session("a") == CHAT
    assert sm.list_trash() == []
    with pytest.raises(SessionNotFoundError, match="not in the trash"):
        sm.restore_session("a")
    sm.delete_session("a")
    sm.save_session("a", CHAT[:1])
    with pytest.raises(SessionConflictError, match="a session with that id exists"):
        sm.restore_session("a")
    assert sm.load_session("a") == CHAT[:1]


def test_purge(sm: SessionManager) -> None:
    for sid in ("a", "b", "c"):
        sm.save_session(sid, CHAT)
        sm.delete_session(sid)
    assert [t.id for t in sm.purge("b")] == ["b"]
    assert sorted(t.id for t in sm.list_trash()) == ["a", "c"]
    assert sm.purge(older_than=timedelta(hours=1)) == []
    assert sorted(t.id for t in sm.purge()) == ["a", "c"]
    assert sm.list_trash() == []


def test_cleanup_dry_run_changes_nothing(sm: SessionManager) -> None:
    sm.save_session("full", CHAT)
    sm.create_session("empty")
    sm.save_session("old", CHAT)
    old = Path(sm.location) / "old_chat.toon"
    text = old.read_text().replace(
        sm.session_info("old").updated_at.isoformat(), "2020-01-01T00:00:00+00:00"
    )
    old.write_text(text)

    def snapshot() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in Path(sm.location).glob("*_chat.toon")}

    before = snapshot()
    assert [r["id"] for r in sm.cleanup(empty=True)] == ["empty"]
    assert [r["id"] for r in sm.cleanup(older_than=timedelta(days=30))] == ["old"]
    assert snapshot() == before and sm.list_trash() == []
    removed = sm.cleanup(older_than=timedelta(days=30), dry_run=False)
    assert [r["id"] for r in removed] == ["old"]
    assert sorted(r["id"] for r in sm.list_sessions()) == ["empty", "full"]
    assert [t.id for t in sm.list_trash()] == ["old"]
    with pytest.raises(UsageError):
        sm.cleanup()


def test_fork(sm: SessionManager) -> None:
    sm.save_session("src", CHAT)
    info = sm.fork_session("src", "copy")
    assert info.message_count == 5 and sm.load_session("copy") == CHAT
    assert sm.session_info("copy").metadata["forked_from"] == {"id": "src", "messages": 5}
    sm.fork_session("src", "cut", at=3)  # would split the tool call from its result
    assert sm.load_session("cut") == CHAT[:2]
    sm.fork_session("src", "cut4", at=4)
    assert sm.load_session("cut4") == CHAT[:4]
    with pytest.raises(SessionConflictError):
        sm.fork_session("src", "copy")
    with pytest.raises(SessionNotFoundError):
        sm.fork_session("nope", "x")


def test_search_ranks_and_highlights(sm: SessionManager) -> None:
    sm.save_session("fact", CHAT)
    sm.save_session(
        "other",
        [
            {"role": "user", "content": "Tell me about Python packaging"},
            {"role": "assistant", "content": "factorial is unrelated here"},
        ],
    )
    sm.save_session("many", [{"role": "user", "content": "factorial factorial factorial"}])
    hits = sm.search("factorial")
    assert {h.session_id for h in hits} == {"fact", "other", "many"}
    assert hits[0].session_id == "many"  # the densest match ranks first
    fact_hits = [h for h in hits if h.session_id == "fact"]
    assert {h.index for h in fact_hits} == {1, 4}
    assert "[factorial]" in fact_hits[0].snippet
    assert [h.session_id for h in sm.search("python factorial")] == ["fact"]
    assert {h.index for h in sm.search("fact.py")} == {2, 3}  # tool call arguments too
    assert sm.search("") == [] and sm.search("zzzz") == []
    assert len(sm.search("factorial", limit=2)) == 2


def test_search_index_follows_changes_and_is_rebuilt(sm: SessionManager) -> None:
    sm.save_session("a", [{"role": "user", "content": "alpha"}])
    assert [h.session_id for h in sm.search("alpha")] == ["a"]
    sm.append_messages("a", [{"role": "assistant", "content": "beta"}])
    sm.save_session("b", [{"role": "user", "content": "beta"}])
    assert sorted(h.session_id for h in sm.search("beta")) == ["a", "b"]
    sm.delete_session("b")
    assert [h.session_id for h in sm.search("beta")] == ["a"]
    index = Path(sm.location) / ".index" / "search.sqlite"
    assert index.is_file()
    from scratchy.stores.toon_files import TOONFileStore

    for suffix in ("", "-wal", "-shm"):
        Path(str(index) + suffix).unlink(missing_ok=True)
    index.write_bytes(b"not a database at all" * 100)
    fresh = SessionManager(store=TOONFileStore(sm.location))
    assert [h.session_id for h in fresh.search("alpha")] == ["a"]


def test_search_sees_writes_in_the_same_clock_tick(sm: SessionManager) -> None:
    for i in range(20):
        sm.save_session(f"s{i}", [{"role": "user", "content": f"needle{i} common"}])
        assert [h.session_id for h in sm.search(f"needle{i}")] == [f"s{i}"]
    os.utime(sm.location, ns=(time.time_ns(), time.time_ns()))
    assert len(sm.search("common", limit=50)) == 20


def test_very_common_words_rank_the_most_recent_matches(sm: SessionManager, monkeypatch) -> None:
    from scratchy.stores import file_search

    monkeypatch.setattr(file_search, "RANK_AT_MOST", 3)
    for i in range(6):
        sm.save_session(f"s{i}", [{"role": "user", "content": f"common word {i}"}])
        sm.search("warm")  # index each session in turn: s5 is the most recent
    hits = sm.search("common", limit=10)
    assert sorted(h.session_id for h in hits) == ["s3", "s4", "s5"]
    assert [h.session_id for h in sm.search("common 1")] == ["s1"]  # rare: found anyway

"""The TOON file store behind SessionManager: format, ids, durability, conflicts, listing."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import datetime
from pathlib import Path

import pytest
import toon_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchy import SessionManager
from scratchy.errors import (
    InvalidMessageError,
    InvalidSessionIdError,
    ScratchyError,
    SessionConflictError,
    SessionCorruptedError,
)

MESSAGES = [
    {"role": "system", "content": "You are a helpful AI assistant..."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi! How can I help?"},
]


@pytest.fixture
def sm(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path / "sessions")


def test_default_directory_is_the_documented_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCRATCHY_SESSION_DIR", raising=False)
    SessionManager().save_session("my_project", MESSAGES)
    path = tmp_path / "scratchy" / "session_history" / "my_project_chat.toon"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_directory_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCRATCHY_SESSION_DIR", str(tmp_path / "env_dir"))
    SessionManager().save_session("a", MESSAGES)
    assert (tmp_path / "env_dir" / "a_chat.toon").is_file()
    assert SessionManager(dir=tmp_path / "env_dir").load_session("a") == MESSAGES


def test_file_is_real_toon_with_header(sm: SessionManager) -> None:
    sm.save_session("my_project", MESSAGES)
    text = (Path(sm.location) / "my_project_chat.toon").read_text()
    assert text.startswith("format: scratchy-session/1\nsession_id: my_project\n")
    doc = toon_format.decode(text)  # the reference decoder reads our file back
    assert doc["messages"] == MESSAGES
    assert doc["session_id"] == "my_project"
    assert datetime.fromisoformat(doc["created_at"]) <= datetime.fromisoformat(doc["updated_at"])
    assert doc["title"] == "Hello"


def test_save_load_exists_delete(sm: SessionManager) -> None:
    assert sm.load_session("nope") is None
    assert not sm.session_exists("nope")
    assert sm.delete_session("nope") is False
    sm.save_session("s1", MESSAGES)
    assert sm.session_exists("s1")
    assert sm.load_session("s1") == MESSAGES
    assert sm.delete_session("s1") is True
    assert not sm.session_exists("s1")
    assert sm.load_session("s1") is None


def test_created_at_is_kept_across_saves(sm: SessionManager) -> None:
    first = sm.save_session("s", MESSAGES[:1])
    second = sm.save_session("s", MESSAGES)
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    fresh = SessionManager(sm.location + "/").session_info("s")
    assert fresh is not None and fresh.created_at == first.created_at


def test_list_sessions_fields(sm: SessionManager) -> None:
    sm.save_session("a", MESSAGES)
    sm.create_session("empty")
    rows = {r["id"]: r for r in sm.list_sessions()}
    assert set(rows) == {"a", "empty"}
    assert rows["a"]["message_count"] == 3 and rows["empty"]["message_count"] == 0
    assert rows["a"]["title"] == "Hello"
    for r in rows.values():
        created = datetime.fromisoformat(r["created_at"])
        assert created.tzinfo is None  # comparable with datetime.now(), as the docs do
        assert abs((datetime.now() - created).total_seconds()) < 60
        assert not r["corrupted"]


def test_list_sees_changes_made_by_another_manager(sm: SessionManager, tmp_path: Path) -> None:
    sm.save_session("a", MESSAGES)
    assert sm.list_sessions()[0]["message_count"] == 3
    # a different process: simulate with a store that does not share our cache
    from scratchy.stores.toon_files import TOONFileStore

    other = SessionManager(store=TOONFileStore(sm.location))
    other.append_messages("a", [{"role": "user", "content": "more"}])
    other.save_session("b", MESSAGES)
    rows = {r["id"]: r["message_count"] for r in sm.list_sessions()}
    assert rows == {"a": 4, "b": 3}
    os.unlink(Path(sm.location) / "b_chat.toon")
    assert {r["id"] for r in sm.list_sessions()} == {"a"}


def test_damaged_catalog_is_rebuilt(sm: SessionManager) -> None:
    sm.save_session("a", MESSAGES)
    sm.list_sessions()
    catalog = Path(sm.location) / ".index" / "catalog.sqlite"
    assert catalog.is_file()
    sm.store.close()
    for suffix in ("-wal", "-shm"):
        catalog.with_name(catalog.name + suffix).unlink(missing_ok=True)
    catalog.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # damaged
    from scratchy.stores.toon_files import TOONFileStore

    fresh = SessionManager(store=TOONFileStore(sm.location))
    assert [r["message_count"] for r in fresh.list_sessions()] == [3]
    assert [i.message_count for i in fresh.list_page(limit=5).items] == [3]
    listing = catalog.with_name("listing.json")  # the last full listing's snapshot
    assert listing.is_file()
    listing.write_text("{ torn")
    fresh = SessionManager(store=TOONFileStore(sm.location))
    assert [r["message_count"] for r in fresh.list_sessions()] == [3]
    db = sqlite3.connect(catalog)  # a row naming another file is not trusted
    db.execute("UPDATE sessions SET row = json_set(row, '$[3]', 99, '$[0][2]', 1)")
    db.commit()
    db.close()
    listing.unlink()
    fresh = SessionManager(store=TOONFileStore(sm.location))
    assert [r["message_count"] for r in fresh.list_sessions()] == [3]
    assert [i.message_count for i in fresh.list_page(limit=5).items] == [3]


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "a\0b",
        "",
        "x" * 129,
        ".hidden",
        "con",
        "NUL.txt",
        "trailing.",
        " space",
        "é",
    ],
)
def test_invalid_ids_are_refused_everywhere(sm: SessionManager, bad: str, tmp_path: Path) -> None:
    for call in (
        lambda: sm.save_session(bad, MESSAGES),
        lambda: sm.load_session(bad),
        lambda: sm.session_exists(bad),
        lambda: sm.delete_session(bad),
        lambda: sm.append_messages(bad, MESSAGES),
    ):
        with pytest.raises(InvalidSessionIdError, match=r"must match \[A-Za-z0-9\]"):
            call()
    assert not (tmp_path / "escaped_chat.toon").exists()
    assert not list(tmp_path.glob("*.toon"))


def test_invalid_id_error_is_a_scratchy_error_and_value_error() -> None:
    with pytest.raises(ScratchyError):
        SessionManager.validate_id("../escaped")
    with pytest.raises(ValueError):
        SessionManager.validate_id("../escaped")


@pytest.mark.parametrize(
    ("messages", "pattern"),
    [
        ([{"role": "robot", "content": "x"}], r"message 0: field 'role' must be one of"),
        ([MESSAGES[0], {"content": "x"}], r"message 1: field 'role'"),
        ([MESSAGES[0], "hello"], r"message 1: expected a dict"),
        ([{"role": "user", "content": 5}], r"message 0: field 'content' must be a string"),
        ([{"role": "tool", "content": "x"}], r"message 0: field 'tool_call_id' is required"),
        (
            [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}],
            r"message 0: field 'tool_calls\[0\].function'",
        ),
        ([{"role": "user", "content": "x", "extra": {1, 2}}], r"field 'extra' is not JSON"),
        ("not a list", r"messages must be a list"),
    ],
)
def test_bad_messages_name_index_and_field(sm: SessionManager, messages, pattern) -> None:
    with pytest.raises(InvalidMessageError, match=pattern):
        sm.save_session("s", messages)
    assert not sm.session_exists("s")


def test_legacy_json_file_loads_and_becomes_toon(sm: SessionManager) -> None:
    path = Path(sm.location) / "old_chat.toon"
    path.parent.mkdir(parents=True, exist_ok=True)
    legacy = {"session_id": "old", "created_at": "2025-11-22T20:30:15", "messages": MESSAGES}
    path.write_text(json.dumps(legacy, indent=2))
    assert sm.load_session("old") == MESSAGES
    [row] = sm.list_sessions()
    assert row["created_at"] == "2025-11-22T20:30:15" and row["message_count"] == 3
    sm.append_messages("old", [{"role": "user", "content": "again"}])
    text = path.read_text()
    assert text.startswith("format: scratchy-session/1")
    assert toon_format.decode(text)["messages"][-1]["content"] == "again"
    assert sm.session_info("old").created_at.isoformat().startswith("2025-11-22T20:30:15")


@pytest.mark.parametrize(
    ("content", "pattern", "flagged"),
    [
        (
            "format: scratchy-session/1\nmessages[2]:\n  - role: user\n    content: hi\n",
            r"line \d+: .*",
            False,
        ),
        ("messages[1]:\n  - role: user\n      content: hi\n", r"line 3", False),
        ("{ not json", r"line 1: invalid JSON", True),
        (b"\xff\xfe garbage", r"line 1: not valid UTF-8", True),
        ("title: x\n", r"no 'messages' list", True),
        ("messages[1]:\n  - role: wizard\n    content: hi\n", r"message 0: field 'role'", False),
    ],
)
def test_corrupted_file(sm: SessionManager, content, pattern, flagged: bool) -> None:
    path = Path(sm.location) / "bad_chat.toon"
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(SessionCorruptedError, match=pattern) as info:
        sm.load_session("bad")
    assert str(path) in str(info.value) and "delete" in str(info.value)
    # listing reads only headers: it never fails, and flags what a header shows to be broken
    [row] = sm.list_sessions()
    assert row["id"] == "bad" and row["corrupted"] is flagged
    if flagged:
        assert row["message_count"] is None and str(path) in row["error"]
    datetime.fromisoformat(row["created_at"])
    # the docs' pattern: except Exception, delete, recreate
    assert sm.session_exists("bad")
    assert sm.delete_session("bad") is True
    assert sm.list_sessions() == []


def test_append_creates_and_extends(sm: SessionManager) -> None:
    info = sm.append_messages("s", MESSAGES[:1])
    assert info.message_count == 1
    info = sm.append_messages("s", MESSAGES[1:], expected_count=1)
    assert info.message_count == 3
    assert sm.load_session("s") == MESSAGES
    with pytest.raises(SessionConflictError, match="has 3 messages, not the 1 expected"):
        sm.append_messages("s", MESSAGES[1:], expected_count=1)
    assert len(sm.load_session("s")) == 3


def test_save_refuses_to_drop_messages_another_process_added(sm: SessionManager) -> None:
    from scratchy.stores.toon_files import TOONFileStore

    sm.save_session("s", MESSAGES[:2])
    mine = sm.load_session("s")
    other = SessionManager(store=TOONFileStore(sm.location))
    other.append_messages("s", [{"role": "assistant", "content": "from elsewhere"}])
    with pytest.raises(SessionConflictError, match="changed by another writer"):
        sm.save_session("s", mine + [{"role": "user", "content": "mine"}])
    assert sm.load_session("s")[-1]["content"] == "from elsewhere"
    sm.save_session("s", MESSAGES, force=True)
    assert sm.load_session("s") == MESSAGES


def test_save_that_extends_a_newer_version_is_allowed(sm: SessionManager) -> None:
    from scratchy.stores.toon_files import TOONFileStore

    sm.save_session("s", MESSAGES[:1])
    other = SessionManager(store=TOONFileStore(sm.location))
    other.append_messages("s", MESSAGES[1:2])
    sm.save_session("s", MESSAGES)  # what is stored is a prefix of the new list
    assert sm.load_session("s") == MESSAGES


def test_stale_temp_files_are_cleaned_and_never_listed(sm: SessionManager) -> None:
    sm.save_session("s", MESSAGES)
    d = Path(sm.location)
    (d / ".tmp").mkdir(exist_ok=True)
    tmp = d / ".tmp" / "s_chat.toon.99999.0.tmp"
    tmp.write_text("torn")
    assert [r["id"] for r in sm.list_sessions()] == ["s"]
    sm.append_messages("s", [{"role": "user", "content": "x"}])
    assert not tmp.exists()


json_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
tricky = st.sampled_from(
    [
        "",
        "true",
        "false",
        "null",
        "42",
        "-1.5e3",
        "- item",
        "# x",
        "a: b",
        '"quoted"',
        "back\\slash",
        "line\nbreak",
        "tab\tx",
        " lead",
        "trail ",
        "[1]",
        "{x}",
        "é 🤖",
        ",",
        "|",
    ]
)
texts = st.one_of(json_text, tricky)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": texts,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": texts, "arguments": texts}),
        }
    ),
    min_size=1,
    max_size=3,
)
message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": texts}
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": texts}), max_size=3
            ),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.none() | texts, "tool_calls": tool_calls}
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": texts, "content": texts}, optional={"name": texts}
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.lists(message, max_size=6), more=st.lists(message, max_size=4))
def test_any_messages_round_trip(sm: SessionManager, first, more) -> None:
    sm.save_session("prop", first)
    assert sm.load_session("prop") == first
    sm.append_messages("prop", more)
    assert sm.load_session("prop") == first + more
    text = (Path(sm.location) / "prop_chat.toon").read_text()
    assert toon_format.decode(text)["messages"] == first + more

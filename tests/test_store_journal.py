"""The append journal of big TOON session files: every reader sees file + journal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import toon_format

from scratchy import SessionManager
from scratchy.errors import SessionConflictError
from scratchy.stores import _journal as jr
from scratchy.stores.toon_files import TOONFileStore


def turn(i: int) -> list[dict]:
    return [
        {"role": "user", "content": f"question {i}"},
        {"role": "tool", "tool_call_id": f"c{i}", "content": f"result {i} " + "r" * 1000},
        {"role": "assistant", "content": f"answer {i}"},
    ]


def big(store: TOONFileStore, sid: str = "big") -> list[dict]:
    """A session just past the journal threshold."""
    msgs: list[dict] = [{"role": "system", "content": "sys"}]
    i = 0
    while len(json.dumps(msgs)) < jr.JOURNAL_AT + 10_000:
        msgs += turn(10_000 + i)
        i += 1
    store.replace(sid, msgs)
    return msgs


def journal(d: Path, sid: str = "big") -> Path:
    return d / jr.JOURNAL_DIR / f"{sid}{jr.JOURNAL_SUFFIX}"


def test_big_session_appends_go_to_the_journal_and_every_reader_sees_them(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    expected = big(store)
    toon_file = tmp_path / "big_chat.toon"
    before = toon_file.read_bytes()
    versions = {store.info("big").version}
    for i in range(5):
        info = store.append("big", turn(i), usage={"input_tokens": 2})
        expected += turn(i)
        assert info.version not in versions and info.message_count == len(expected)
        versions.add(info.version)
    assert toon_file.read_bytes() == before  # not rewritten: a complete TOON document still
    doc = toon_format.decode(before.decode())
    assert doc["messages"] == expected[: len(doc["messages"])]
    size = journal(tmp_path).stat().st_size
    assert 0 < size < 6 * len(json.dumps(turn(0))) * 2  # proportional to the turns
    other = TOONFileStore(tmp_path)  # another process's view: nothing cached
    stored = other.load("big")
    assert stored is not None and stored.messages == expected
    assert stored.info.version == info.version == other.info("big").version
    assert stored.info.metadata["usage"] == {"input_tokens": 10}
    [row] = TOONFileStore(tmp_path).list()
    assert (row.message_count, row.version) == (len(expected), info.version)
    assert other.list_page(limit=1).items[0].message_count == len(expected)
    assert [h.index for h in other.search("question 4")][:1] == [len(expected) - 3]
    # the catalog notices a journal append made elsewhere
    store.append("big", turn(5))
    expected += turn(5)
    [row] = other.list()
    assert row.message_count == len(expected)
    assert other.search("question 5")[0].index == len(expected) - 3


def test_conditional_writes_use_the_journal_version(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    msgs = big(store)
    v1 = store.append("big", turn(1)).version
    other = TOONFileStore(tmp_path)
    other.append("big", turn(2), expected_version=v1)
    with pytest.raises(SessionConflictError):
        store.append("big", turn(3), expected_version=v1)
    with pytest.raises(SessionConflictError):  # would drop what `other` added
        store.replace("big", msgs + turn(1) + turn(3), expected_version=v1)
    assert store.load("big").messages == msgs + turn(1) + turn(2)
    info = store.update_header("big", title="Renamed", metadata={"k": "v"})
    fresh = TOONFileStore(tmp_path).info("big")
    assert (fresh.title, fresh.metadata, fresh.version) == ("Renamed", {"k": "v"}, info.version)


def test_the_journal_is_folded_when_it_reaches_the_file_size(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    expected = big(store)
    size = (tmp_path / "big_chat.toon").stat().st_size
    i, last = 0, 0
    while journal(tmp_path).exists() or i == 0:
        last = journal(tmp_path).stat().st_size if i else 0
        store.append("big", turn(i))
        expected += turn(i)
        i += 1
        assert i < 1000
    assert size * jr.FOLD_AT * 0.98 < last <= size * jr.FOLD_AT  # folded when it was due
    doc = toon_format.decode((tmp_path / "big_chat.toon").read_text())
    assert doc["messages"] == expected
    assert TOONFileStore(tmp_path).load("big").messages == expected


def test_a_torn_tail_is_ignored_then_dropped(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    expected = big(store)
    store.append("big", turn(1))
    expected += turn(1)
    good = journal(tmp_path).read_bytes()
    record = jr.encode_record("x", 0, {}, turn(2))
    with open(journal(tmp_path), "ab") as f:
        f.write(good.splitlines(keepends=True)[-1][:-30])  # a record cut short
    assert TOONFileStore(tmp_path).load("big").messages == expected
    assert TOONFileStore(tmp_path).info("big").message_count == len(expected)
    store.append("big", turn(3))
    expected += turn(3)
    assert TOONFileStore(tmp_path).load("big").messages == expected
    assert journal(tmp_path).read_bytes().startswith(good)
    # a record with a bad checksum ends the journal too
    with open(journal(tmp_path), "ab") as f:
        f.write(b"00000000" + record[8:])
    assert TOONFileStore(tmp_path).load("big").messages == expected


def test_a_journal_left_by_a_killed_fold_is_ignored(tmp_path: Path) -> None:
    store = TOONFileStore(tmp_path)
    expected = big(store)
    store.append("big", turn(1))
    expected += turn(1)
    leftover = journal(tmp_path).read_bytes()
    store.replace("big", expected + turn(2))  # writes the file, then removes the journal
    expected += turn(2)
    journal(tmp_path).write_bytes(leftover)  # as if killed between the two steps
    fresh = TOONFileStore(tmp_path)
    assert fresh.load("big").messages == expected
    assert fresh.info("big").message_count == len(expected)
    assert fresh.list()[0].message_count == len(expected)
    fresh.append("big", turn(3))  # drops the leftover records
    expected += turn(3)
    assert TOONFileStore(tmp_path).load("big").messages == expected


def test_delete_restore_fork_copy_and_export_keep_journal_messages(tmp_path: Path) -> None:
    d = tmp_path / "s"
    store = TOONFileStore(d)
    expected = big(store)
    store.append("big", turn(1))
    expected += turn(1)
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)  # new inodes: the journal still belongs to the file
    assert TOONFileStore(copy).load("big").messages == expected
    store.fork("big", "forked")
    assert store.load("forked").messages == expected
    assert store.delete("big") and not journal(d).exists()
    [entry] = store.list_trash()
    assert entry.message_count == len(expected)
    store.restore("big")
    assert TOONFileStore(d).load("big").messages == expected
    store.append("big", turn(2))
    expected += turn(2)
    env = {**os.environ, "NO_COLOR": "1"}
    cli = [sys.executable, "-m", "scratchy.cli.main", "sessions"]
    out = subprocess.run(
        [*cli, "export", "big", "--dir", str(d)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected
    out = subprocess.run(
        [*cli, "show", "big", "-n", "1", "--dir", str(d)], capture_output=True, text=True, env=env
    )
    assert f"Messages: {len(expected)}" in out.stdout and "answer 2" in out.stdout


def test_session_manager_sees_journal_appends_from_another_process(tmp_path: Path) -> None:
    sm = SessionManager(tmp_path)
    expected = big(sm.store)
    sm.load_session("big")
    code = (
        "import sys; from scratchy import SessionManager; "
        "SessionManager(sys.argv[1]).append_messages('big', "
        "[{'role': 'user', 'content': 'from the other process'}])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert journal(tmp_path).exists()
    messages = sm.load_session("big")
    assert messages[:-1] == expected and messages[-1]["content"] == "from the other process"
    assert [r["message_count"] for r in sm.list_sessions()] == [len(expected) + 1]

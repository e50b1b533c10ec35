"""The TOON file store on a read-only directory and with files edited by hand (issue 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratchy import Agent, SessionManager
from scratchy.errors import StoreUnavailableError
from scratchy.testing import FakeProvider


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A session directory holding one session, then made read-only: a read-only tmpfs mount
    for root (whom permissions do not stop), else a directory without write permission."""
    source = tmp_path / "source"
    sm = SessionManager(source)
    sm.save_session("notes", [{"role": "user", "content": "a note about armadillos"}])
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)], check=True)
        try:
            for f in source.glob("*_chat.toon"):
                shutil.copy2(f, target / f.name)
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
            yield target
        finally:
            subprocess.run(["umount", str(target)], check=False)
    else:
        for f in source.glob("*_chat.toon"):
            shutil.copy2(f, target / f.name)
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)


def test_reading_works_on_a_read_only_directory(read_only_dir: Path) -> None:
    before = sorted(p.name for p in read_only_dir.iterdir())
    sm = SessionManager(read_only_dir)
    assert [s["id"] for s in sm.list_sessions()] == ["notes"]
    assert sm.load_session("notes") == [{"role": "user", "content": "a note about armadillos"}]
    assert sm.session_info("notes").message_count == 1  # type: ignore[union-attr]
    assert [h.session_id for h in sm.search("armadillos")] == ["notes"]
    assert [i.id for i in sm.list_page(limit=5).items] == ["notes"]
    assert sorted(p.name for p in read_only_dir.iterdir()) == before  # nothing created


def test_writing_to_a_read_only_directory_says_so_in_one_line(read_only_dir: Path) -> None:
    sm = SessionManager(read_only_dir)
    with pytest.raises(StoreUnavailableError) as err:
        sm.save_session("new", [{"role": "user", "content": "x"}])
    message = str(err.value)
    assert "\n" not in message and str(read_only_dir) in message
    assert "make the directory writable" in message
    with pytest.raises(StoreUnavailableError):
        sm.append_messages("notes", [{"role": "user", "content": "more"}])
    with pytest.raises(StoreUnavailableError):
        sm.delete_session("notes")
    assert sm.load_session("notes") == [{"role": "user", "content": "a note about armadillos"}]


async def test_a_final_newline_added_by_an_editor_is_harmless(tmp_path: Path) -> None:
    sm = SessionManager(tmp_path / "s")
    agent = Agent(provider=FakeProvider(["first reply", "second reply"]), session_manager=sm)
    await agent.chat("first", session_id="notes")
    path = tmp_path / "s" / "notes_chat.toon"
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n\n")  # what `echo >> file` or an editor does
    assert [s["corrupted"] for s in sm.list_sessions()] == [False]
    other = Agent(
        provider=FakeProvider(["second reply"]), session_manager=SessionManager(path.parent)
    )
    await other.chat("second", session_id="notes")
    loaded = SessionManager(path.parent).load_session("notes") or []
    assert [m["content"] for m in loaded][1:] == ["first", "first reply", "second", "second reply"]
    assert not path.read_text(encoding="utf-8").endswith("\n\n")
    from scratchy import toon

    assert toon.loads(path.read_text(encoding="utf-8"))["messages"] == loaded


def test_a_session_edited_by_hand_is_not_overwritten_by_a_stale_writer(tmp_path: Path) -> None:
    sm = SessionManager(tmp_path / "s")
    sm.save_session("hand", [{"role": "user", "content": "original"}])
    path = tmp_path / "s" / "hand_chat.toon"
    text = path.read_text(encoding="utf-8").replace("original", "edited by hand")
    path.write_text(text, encoding="utf-8")  # an editor's save: a new version
    from scratchy.errors import SessionConflictError

    with pytest.raises(SessionConflictError):
        sm.save_session(
            "hand",
            [
                {"role": "user", "content": "original"},
                {"role": "user", "content": uuid.uuid4().hex},
            ],
        )
    assert sm.load_session("hand") == [{"role": "user", "content": "edited by hand"}]

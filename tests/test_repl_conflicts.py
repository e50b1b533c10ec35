"""Issue 11, problem 5 in the REPL: after a save conflict, /clear, /undo and /compact leave the
chat as it was, say how to get out, and nothing is lost from the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scratchy import SessionManager

from .test_repl import Term

APPEND = (
    "import sys\nfrom scratchy import SessionManager\n"
    "SessionManager(sys.argv[1]).append_messages("
    "'shared3', [{'role': 'user', 'content': 'from another process'}])"
)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    (tmp_path / "scratchy" / "session_history").mkdir(parents=True)
    return tmp_path


def stored(cwd: Path) -> list[str]:
    messages = SessionManager(cwd / "scratchy" / "session_history").load_session("shared3")
    return [str(m.get("content")) for m in messages or [] if m["role"] != "system"]


def other_process_appends(cwd: Path) -> None:
    directory = str(cwd / "scratchy" / "session_history")
    subprocess.run([sys.executable, "-c", APPEND, directory], check=True)


@pytest.mark.parametrize("command", ["/clear", "/undo"])
def test_a_rewrite_refused_by_a_conflict_changes_nothing(cwd: Path, command: str) -> None:
    t = Term(cwd, "--session", "shared3")
    t.wait_prompt("shared3")
    t.send("first question", "shared3")
    other_process_appends(cwd)
    out = t.send(command, "shared3")
    assert "changed by another writer" in out and "/reload" in out
    assert "Cleared" not in out and "Dropped" not in out
    assert stored(cwd) == ["first question", "You said: first question", "from another process"]
    # the chat was left as it was: the next turn goes after the other process's message
    t.send("second question", "shared3")
    assert stored(cwd) == [
        "first question",
        "You said: first question",
        "from another process",
        "second question",
        "You said: second question",
    ]
    # /reload then the command works
    assert "Reloaded 'shared3'" in t.send("/reload", "shared3")
    out = t.send(command, "shared3")
    assert "Error" not in out
    t.close()
    if command == "/clear":
        assert stored(cwd) == []
    else:
        assert stored(cwd)[-1] == "from another process"


def test_compact_refused_by_a_conflict_changes_nothing(cwd: Path, tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    answers = [f"a{i}" for i in range(8)]
    script.write_text(json.dumps([*answers, "a summary of the talk"]))
    t = Term(cwd, "--session", "shared3", model=f"fake:{script}")
    t.wait_prompt("shared3")
    for i in range(8):
        t.send(f"q{i}", "shared3")
    before = stored(cwd)
    other_process_appends(cwd)
    out = t.send("/compact", "shared3")
    assert "changed by another writer" in out and "/reload" in out
    assert stored(cwd) == [*before, "from another process"]
    assert not any("summary" in m for m in stored(cwd))
    t.close()

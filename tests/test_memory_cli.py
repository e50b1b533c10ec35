"""``scratchy memory ...``, ``scratchy sessions rm --with-memories`` and the REPL's ``/memory``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
from click.testing import CliRunner

from scratchy import SessionManager, toon
from scratchy.cli.main import cli
from scratchy.memory import MemoryStore
from tests.test_repl import ANSI, Term


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_add_list_search_edit_rm_export() -> None:
    assert run("memory", "list").output == (
        'No memories yet. Add one with: scratchy memory add "I prefer tabs"\n'
    )
    assert not Path("scratchy/session_history").exists()  # listing created nothing
    added = run("memory", "add", "-t", "style", "I", "prefer", "tabs", "over", "spaces")
    assert re.fullmatch(r"Remembered (m_[0-9a-f]{10}): I prefer tabs over spaces\n", added.output)
    mid = added.output.split()[1].rstrip(":")
    again = run("memory", "add", "i prefer TABS over spaces!")
    assert again.output == f"Already remembered {mid}: I prefer tabs over spaces\n"
    run("memory", "add", "The deploy host is hermes")
    # in a pipe: one tab-separated line per memory, newest first
    rows = [line.split("\t") for line in run("memory", "list").output.splitlines()]
    assert [r[4] for r in rows] == ["The deploy host is hermes", "I prefer tabs over spaces"]
    assert rows[1][0] == mid and rows[1][2] == "style" and rows[1][3] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", rows[1][1])
    found = run("memory", "search", "which", "spaces?")
    assert found.exit_code == 0 and found.output.split("\t")[0] == mid
    none = run("memory", "search", "zebra")
    assert none.exit_code == 1 and none.output == "No memories match.\n"
    data = json.loads(run("memory", "search", "tabs", "--json").output)
    assert data[0]["id"] == mid and data[0]["tags"] == ["style"]
    edited = run("memory", "edit", mid[:6], "I", "prefer", "spaces")
    assert edited.output == f"Updated {mid}: I prefer spaces\n"
    exported = json.loads(run("memory", "export").output)
    assert exported[0]["history"][0]["text"] == "I prefer tabs over spaces"
    doc = toon.loads(run("memory", "export", "--format", "toon").output)
    assert doc["format"] == "scratchy-memories/1" and len(doc["memories"]) == 2
    assert run("memory", "export", "-o", "mem.json").exit_code == 0
    assert len(json.loads(Path("mem.json").read_text())) == 2
    gone = run("memory", "rm", mid, "m_nothere")
    assert gone.exit_code == 1
    assert gone.output.startswith(f"Forgot {mid}: I prefer spaces\n")
    assert "no memory 'm_nothere'" in gone.output
    assert len(MemoryStore().list()) == 1


def test_secrets_and_bad_input_are_one_line_errors() -> None:
    result = run("memory", "add", "my", "password=hunter2")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Not remembered: it looks like a secret")
    assert result.output.count("\n") == 1
    bad = run("memory", "add", "-t", "a,b", "x")
    assert bad.exit_code == 1 and bad.output.startswith("Error: invalid tag 'a,b'")
    assert run("memory", "rm").exit_code == 2  # usage: needs ids or --session
    assert run("memory", "list", "--dir", "nowhere").exit_code == 1


def test_owners_and_sessions_rm_with_memories() -> None:
    sm = SessionManager()
    sm.save_session("trip", [{"role": "user", "content": "I fly to Oslo"}])
    mem = MemoryStore(sm)
    mem.remember("The user flies to Oslo", source={"session": "trip", "message": 0})
    mem.remember("The user likes tea")
    MemoryStore(sm.store.scoped("alice")).remember("Alice likes coffee")
    assert "Alice likes coffee" in run("memory", "list", "--owner", "alice").output
    assert "coffee" not in run("memory", "list").output
    out = run("sessions", "rm", "trip", "--with-memories").output
    assert out == (
        "Moved session 'trip' to the trash (undo: scratchy sessions restore trip)\n"
        "Forgot 1 memories taken from it (for good)\n"
    )
    assert [m.text for m in mem.list()] == ["The user likes tea"]
    mem.remember("The user was in Rome", source={"session": "rome", "message": 3})
    assert run("memory", "rm", "--session", "rome").output == (
        "Forgot 1 memories taken from session 'rome'\n"
    )


def test_terminal_output_fits_80_columns(tmp_path: Path) -> None:
    """In a real 80-column terminal: wrapped text, tags and provenance on their own line."""
    mem = MemoryStore(SessionManager(tmp_path / "s"))
    long = "The user maintains the billing service, written in Go, deployed on Fridays " * 2
    m = mem.remember(long.strip(), tags=["work", "go"], source={"session": "intro", "message": 3})
    env = dict(os.environ, NO_COLOR="1", COLUMNS="80", LINES="24")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scratchy.cli.main", "memory", "list", "--dir", str(tmp_path / "s")],
        env=env,
        encoding="utf-8",
        dimensions=(24, 80),
        timeout=20,
    )
    child.expect(pexpect.EOF)
    lines = ANSI.sub("", child.before).splitlines()
    assert lines[0].startswith(f"{m.id}  ")
    assert all(len(line) <= 80 for line in lines) and len(lines) == 4
    assert lines[-1] == "  tags: work, go · from intro#3"


def test_repl_memory_command(tmp_path: Path) -> None:
    (tmp_path / "scratchy" / "session_history").mkdir(parents=True)
    t = Term(tmp_path)
    t.wait_prompt("default")
    assert t.send("/memory") == "No memories yet. Add one with /memory add <text>."
    out = t.send("/memory add I prefer dark themes")
    mid = re.search(r"m_[0-9a-f]{10}", out).group(0)
    assert out == f"🧠 Remembered {mid}: I prefer dark themes"
    assert t.send("/memory") == f"🧠 Memories (1):\n {mid}  I prefer dark themes"
    assert t.send("/memory search dark") == f" {mid}  I prefer dark themes"
    assert t.send("/memory search zebra") == "No memories match."
    assert "looks like a secret" in t.send("/memory add token=abcdef1234567")
    assert "Unknown /memory action 'frob'" in t.send("/memory frob")
    assert t.send(f"/memory forget {mid}") == f"🗑 Forgot {mid}: I prefer dark themes"
    assert "no memory" in t.send(f"/memory forget {mid}")
    t.close()


def test_chat_with_memory_on_puts_memories_in_context(tmp_path: Path) -> None:
    """``scratchy chat --memory on`` with a scripted model that echoes what it was sent."""
    MemoryStore(SessionManager(tmp_path / "s")).remember("The user's dog is called Rex")
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Your dog is Rex."]))
    env = dict(os.environ, SCRATCHY_MODEL=f"fake:{script}")
    where = str(tmp_path / "s")
    command = [sys.executable, "-m", "scratchy.cli.main", "chat", "--memory", "on", "--dir",
               where, "-s", "dogs", "--no-tools", "what is my dog called?"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Your dog is Rex." in out.stdout
    info = SessionManager(tmp_path / "s").session_info("dogs")
    assert len(info.metadata["memories"]) == 1

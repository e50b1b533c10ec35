"""``scratchy sessions list`` in a real terminal (a pseudo-terminal at 60, 80 and 120 columns) and
in a pipe: ids are never cut, other columns give way first, a pipe gets tab-separated rows."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect
import pytest

from scratchy import SessionManager

from .test_cli import _scratchy, scratchy_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HISTORY = Path("scratchy") / "session_history"
IDS = [
    "coding_task_refactor_the_auth_module",
    "notes",
    "research-2025-11-22.v2",
    "x" * 70,
]
TITLE = "How do I sort a list of dictionaries by two keys, one of them descending?"


def _sessions(tmp_path: Path) -> SessionManager:
    sm = SessionManager(tmp_path / HISTORY)
    for sid in IDS:
        sm.save_session(sid, [{"role": "user", "content": f"{TITLE} ({sid[:5]})"}])
    return sm


def in_terminal(tmp_path: Path, columns: int, *args: str) -> list[str]:
    """The lines ``scratchy sessions list ARGS`` prints in a pty ``columns`` wide."""
    return sessions_in_terminal(tmp_path, columns, "list", *args)


def sessions_in_terminal(tmp_path: Path, columns: int, *args: str) -> list[str]:
    """The lines ``scratchy sessions ARGS`` prints in a pty ``columns`` wide (exit 0 checked)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scratchy.cli.main", "sessions", *args],
        cwd=str(tmp_path),
        env=scratchy_env(NO_COLOR="1", COLUMNS=str(columns)),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, columns),
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return [ANSI.sub("", line) for line in (child.before or "").replace("\r", "").splitlines()]


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_ids_are_never_cut_in_a_terminal(tmp_path: Path, columns: int) -> None:
    _sessions(tmp_path)
    lines = in_terminal(tmp_path, columns)
    header, rows = lines[0], lines[1:]
    if columns < 70 + 2 + len("Messages"):  # the 70-character id leaves no room for more
        assert header == "ID"
    else:
        assert header.startswith("ID ") and "Messages" in header
    assert len(rows) == len(IDS)
    assert sorted(row.split()[0] for row in rows) == sorted(IDS)
    for row in rows:
        assert len(row) <= max(columns, len(row.split()[0])), row
        assert "…" not in row.split()[0]
    if columns >= 120:
        assert "Title" in header and "Created" not in header  # Created went first
        assert any(TITLE[:15] in row for row in rows)
    if columns <= 80:
        assert "Created" not in header  # the first column to go


def test_a_wide_terminal_shows_every_column(tmp_path: Path) -> None:
    SessionManager(tmp_path / HISTORY).save_session("short", [{"role": "user", "content": TITLE}])
    lines = in_terminal(tmp_path, 120)
    assert lines[0].split() == ["ID", "Messages", "Last", "activity", "Created", "Title"]
    assert lines[1].startswith("short ") and "How do I sort a list of dict" in lines[1]


def test_a_narrow_terminal_keeps_a_shortened_title(tmp_path: Path) -> None:
    SessionManager(tmp_path / HISTORY).save_session("short", [{"role": "user", "content": TITLE}])
    lines = in_terminal(tmp_path, 60)
    assert lines[0].split() == ["ID", "Messages", "Last", "activity", "Title"]
    row = lines[1]
    assert row.startswith("short ") and len(row) <= 60 and row.endswith("…")
    assert "How do I sort" in row


def test_an_id_wider_than_the_terminal_is_still_printed_whole(tmp_path: Path) -> None:
    long_id = "a" * 100
    SessionManager(tmp_path / HISTORY).create_session(long_id)
    lines = in_terminal(tmp_path, 60)
    assert long_id in "".join(lines)  # the terminal may wrap it; the characters are all there


def test_limit_in_a_terminal_says_how_many_are_left(tmp_path: Path) -> None:
    _sessions(tmp_path)
    lines = in_terminal(tmp_path, 80, "--limit", "2")
    assert len(lines) == 4 and lines[-1] == f"(2 of {len(IDS)} sessions; --limit 0 lists all)"


def test_a_pipe_gets_tab_separated_rows_without_header(tmp_path: Path) -> None:
    sm = _sessions(tmp_path)
    done = _scratchy("sessions", "list", cwd=tmp_path, COLUMNS="40")
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    expected = sm.list_sessions()
    assert [r[0] for r in rows] == [s["id"] for s in expected]  # newest activity first
    for row, info in zip(rows, expected, strict=True):
        assert row == [
            info["id"],
            str(info["message_count"]),
            info["updated_at"],
            info["created_at"],
            info["title"],
        ]


def test_a_pipe_marks_a_corrupted_session(tmp_path: Path) -> None:
    _sessions(tmp_path)
    (tmp_path / HISTORY / "broken_chat.toon").write_text('format: scratchy-session/1\ntitle: "x\n')
    done = _scratchy("sessions", "list", cwd=tmp_path)
    [broken] = [line for line in done.stdout.splitlines() if line.startswith("broken\t")]
    assert broken.split("\t")[1] == "corrupted"


def test_limit_in_a_pipe_and_in_json(tmp_path: Path) -> None:
    import json

    sm = _sessions(tmp_path)
    newest = [s["id"] for s in sm.list_sessions()]
    done = _scratchy("sessions", "list", "--limit", "2", cwd=tmp_path)
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == newest[:2]
    as_json = _scratchy("sessions", "list", "-n", "3", "--json", cwd=tmp_path)
    assert [r["id"] for r in json.loads(as_json.stdout)] == newest[:3]
    everything = _scratchy("sessions", "list", "--limit", "0", cwd=tmp_path)
    assert len(everything.stdout.splitlines()) == len(IDS)


def test_show_wraps_messages_at_words_in_a_terminal_and_not_in_a_pipe(tmp_path: Path) -> None:
    path = "/home/someone/projects/a-very-long-directory-name/with/a/deep/file_name.py"
    text = f"{TITLE} Look at {path} and tell me.\nSecond line stays a line."
    SessionManager(tmp_path / HISTORY).save_session("w", [{"role": "user", "content": text}])
    lines = sessions_in_terminal(tmp_path, 60, "show", "w")
    body = lines[lines.index("") + 1 :]
    assert body[0] == "user: How do I sort a list of dictionaries by two keys, one"
    assert all(len(line) <= 59 for line in body if path not in line)
    assert f"  {path}" in body  # a word wider than the terminal is kept whole
    assert " ".join(line.strip() for line in body[:-1]) == f"user: {text.splitlines()[0]}"
    assert body[-1] == "Second line stays a line."
    piped = _scratchy("sessions", "show", "w", cwd=tmp_path, COLUMNS="60")
    assert piped.stdout.splitlines()[-2:] == [f"user: {text.splitlines()[0]}", body[-1]]

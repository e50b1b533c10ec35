"""Bad input on the command line: one clear line on stderr, exit status 1, no traceback, and
nothing created that was not asked for. Every case runs the real entry point
(``python -m scratchy.cli.main``) in a pipe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from scratchy import SessionManager

from .test_cli import _scratchy

HISTORY = Path("scratchy") / "session_history"


def one_error_line(done: subprocess.CompletedProcess, *parts: str) -> str:
    """Assert exit 1 with exactly one ``Error: ...`` line holding ``parts``; return it."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def _store(tmp_path: Path) -> SessionManager:
    sm = SessionManager(tmp_path / HISTORY)
    sm.save_session("notes", [{"role": "user", "content": "hello"}])
    return sm


# --- item 4: a fake: script that is missing or not JSON ---------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON (line 1, column 2"),
        (b"\xff\xfe[]", "is not UTF-8 text"),
        ('{"delay": 1}', "expected a JSON list of replies"),
    ],
)
def test_a_bad_fake_script_at_start_up_is_one_line(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    script = tmp_path / "bad.json"
    if isinstance(content, bytes):
        script.write_bytes(content)
    elif content is not None:
        script.write_text(content)
    for args in (["chat", "-m", f"fake:{script}", "hi"], ["chat", "-m", f"fake:{script}"]):
        done = _scratchy(*args, input="hello\n", cwd=tmp_path)
        one_error_line(done, f"fake model script {script}", expected)
    assert not (tmp_path / HISTORY / "default_chat.toon").exists()


def test_a_good_fake_script_still_answers(tmp_path: Path) -> None:
    script = tmp_path / "ok.json"
    script.write_text(json.dumps(["Scripted hello"]))
    done = _scratchy("chat", "-m", f"fake:{script}", "-s", "s", "hi", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "Scripted hello\n", done.stderr


# --- item 5 and 17: export, import, show --------------------------------------------------------


def test_export_to_a_missing_directory(tmp_path: Path) -> None:
    _store(tmp_path)
    target = tmp_path / "nonexistent" / "x.json"
    done = _scratchy("sessions", "export", "notes", "-o", str(target), cwd=tmp_path)
    one_error_line(done, f"Cannot write {target}", "does not exist")
    assert not target.parent.exists()
    (tmp_path / "a_dir.json").mkdir()
    done = _scratchy("sessions", "export", "notes", "-o", "a_dir.json", cwd=tmp_path)
    one_error_line(done, "Cannot write a_dir.json")


def test_import_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    Path(tmp_path / "latin1.json").write_bytes(
        '[{"role": "user", "content": "café"}]'.encode("latin-1")
    )
    done = _scratchy("sessions", "import", "latin1.json", "--id", "x", cwd=tmp_path)
    one_error_line(done, "latin1.json is not UTF-8 text (byte 0xe9 at offset 33)", "iconv")
    assert not (tmp_path / HISTORY / "x_chat.toon").exists()


def test_import_with_a_bom_is_accepted(tmp_path: Path) -> None:
    data = json.dumps([{"role": "user", "content": "café"}]).encode("utf-8-sig")
    (tmp_path / "bom.json").write_bytes(data)
    done = _scratchy("sessions", "import", "bom.json", "--id", "x", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert SessionManager(tmp_path / HISTORY).load_session("x")[0]["content"] == "café"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty.json is empty: expected a JSON list of messages"),
        ("  \n\n", "empty.json is empty"),
        ('{"id": "x"}', "holds an object without 'messages'"),
        ('"just text"', "holds a string, not a list of messages"),
        ("42", "holds a int value, not a list of messages"),
    ],
)
def test_import_of_an_empty_or_odd_file(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "empty.json").write_text(content)
    done = _scratchy("sessions", "import", "empty.json", "--id", "x", cwd=tmp_path)
    line = one_error_line(done, expected)
    assert "got dict" not in line
    assert not (tmp_path / HISTORY).exists()


def test_import_from_stdin(tmp_path: Path) -> None:
    data = json.dumps([{"role": "user", "content": "piped"}])
    done = _scratchy("sessions", "import", "-", "--id", "piped", input=data, cwd=tmp_path)
    assert done.returncode == 0 and "Imported 1 messages" in done.stdout, done.stderr


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    done = _scratchy("sessions", "import", "nope.json", "--id", "x", cwd=tmp_path)
    one_error_line(done, "Cannot read nope.json")


def test_show_with_a_negative_count(tmp_path: Path) -> None:
    _store(tmp_path)
    done = _scratchy("sessions", "show", "notes", "-n", "-1", cwd=tmp_path)
    one_error_line(done, "-n/--last must be 0 or more", "got -1")
    shown = _scratchy("sessions", "show", "notes", "-n", "0", cwd=tmp_path)
    assert shown.returncode == 0 and "user: hello" in shown.stdout


def test_list_and_search_with_a_negative_limit(tmp_path: Path) -> None:
    _store(tmp_path)
    one_error_line(_scratchy("sessions", "list", "--limit", "-2", cwd=tmp_path), "--limit")
    one_error_line(_scratchy("sessions", "search", "x", "-n", "-2", cwd=tmp_path), "--limit")


# --- item 15: a location that does not exist ----------------------------------------------------


READ_ONLY = [
    ["sessions", "list"],
    ["sessions", "list", "--json"],
    ["sessions", "show", "notes"],
    ["sessions", "search", "hello"],
    ["sessions", "export", "notes"],
    ["sessions", "trash"],
    ["sessions", "rm", "notes"],
    ["sessions", "restore", "notes"],
    ["sessions", "purge"],
    ["sessions", "cleanup", "--empty"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_create_a_directory(tmp_path: Path, args: list[str]) -> None:
    done = _scratchy(*args, "--dir", "typo", cwd=tmp_path)
    one_error_line(done, "session directory 'typo' does not exist", "check --dir")
    done = _scratchy(*args, "--dir", "sqlite:///typo.db", cwd=tmp_path)
    one_error_line(done, "SQLite database 'typo.db' does not exist")
    done = _scratchy(*args, cwd=tmp_path, SCRATCHY_SESSION_DIR="typo2")
    one_error_line(done, "session directory 'typo2' does not exist", "$SCRATCHY_SESSION_DIR")
    # the default directory before the first session: nothing there, nothing created
    done = _scratchy(*args, cwd=tmp_path)
    assert "Traceback" not in done.stderr and done.returncode in (0, 1), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_default_directory_before_the_first_session(tmp_path: Path) -> None:
    listed = _scratchy("sessions", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout == ""
    assert "No sessions yet" in listed.stderr
    assert _scratchy("sessions", "list", "--json", cwd=tmp_path).stdout == "[]\n"
    shown = _scratchy("sessions", "show", "notes", cwd=tmp_path)
    one_error_line(shown, "No session 'notes'")
    searched = _scratchy("sessions", "search", "x", cwd=tmp_path)
    assert searched.returncode == 1 and searched.stdout == "No matches.\n"
    assert _scratchy("sessions", "trash", cwd=tmp_path).stdout == "The trash is empty.\n"
    assert not (tmp_path / "scratchy").exists()


def test_an_existing_directory_still_works_with_dir(tmp_path: Path) -> None:
    _store(tmp_path)
    done = _scratchy("sessions", "search", "hello", "--dir", str(HISTORY), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("notes  #0 user:"), done.stderr


def test_migrate_from_a_source_that_does_not_exist(tmp_path: Path) -> None:
    done = _scratchy(
        "sessions", "migrate", "--from", "typo", "--to", "sqlite:///m.db", cwd=tmp_path
    )
    one_error_line(done, "--from: session directory 'typo' does not exist", "nothing was copied")
    done = _scratchy(
        "sessions", "migrate", "--from", "sqlite:///nope.db", "--to", "out", cwd=tmp_path
    )
    one_error_line(done, "--from: SQLite database 'nope.db' does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    _store(tmp_path)
    done = _scratchy(
        "sessions", "migrate", "--from", str(HISTORY), "--to", "sqlite:///m.db", cwd=tmp_path
    )
    assert done.returncode == 0 and "1 copied" in done.stdout, done.stderr


def test_import_creates_the_directory_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text(json.dumps([{"role": "user", "content": "x"}]))
    done = _scratchy("sessions", "import", "in.json", "--id", "x", "--dir", "new", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "x_chat.toon").is_file()


# --- item 16: errors name the command, not the Python API ---------------------------------------


def test_errors_name_the_command_not_the_python_api(tmp_path: Path) -> None:
    _store(tmp_path)
    done = _scratchy("sessions", "restore", "nope", cwd=tmp_path)
    line = one_error_line(done, "Session 'nope' is not in the trash", "scratchy sessions trash")
    assert "list_trash" not in line
    broken = tmp_path / HISTORY / "broken_chat.toon"
    broken.write_text('format: scratchy-session/1\ntitle: "Notes\nmessages[0]:\n')
    for args in (["show", "broken"], ["export", "broken"]):
        line = one_error_line(_scratchy("sessions", *args, cwd=tmp_path), "broken_chat.toon")
        assert "scratchy sessions rm broken" in line, line
        assert "SessionManager" not in line and "delete_session" not in line
    one_error_line(_scratchy("sessions", "restore", "notes", cwd=tmp_path), "not in the trash")


def test_the_python_api_keeps_its_own_wording(tmp_path: Path) -> None:
    from scratchy.errors import SessionNotFoundError

    sm = _store(tmp_path)
    with pytest.raises(SessionNotFoundError, match=r"see list_trash\(\)"):
        sm.restore_session("nope")


def test_cli_message_translates_each_api_hint() -> None:
    from scratchy.cli.sessions_cmd import cli_message
    from scratchy.errors import SessionConflictError, SessionCorruptedError

    corrupted = SessionCorruptedError(
        "Session file /x/scratchy/session_history/notes_chat.toon, line 3: bad. Fix or delete "
        "the file (SessionManager.delete_session removes it).",
    )
    assert cli_message(corrupted).endswith(
        "Fix or delete the file (scratchy sessions rm notes moves it to the trash)."
    )
    db = SessionCorruptedError(
        "sqlite:///s.db session 'notes': bad. Delete the session "
        "(SessionManager.delete_session) or repair it"
    )
    assert cli_message(db).endswith("Delete the session (scratchy sessions rm notes) or repair it")
    conflict = SessionConflictError(
        "Session 'a' was changed by another writer. Load it again, use append(), or pass "
        "force=True to overwrite.",
        session_id="a",
        expected=1,
        actual=2,
    )
    assert cli_message(conflict).endswith("or pass --force to overwrite.")
    assert "append()" not in cli_message(conflict)

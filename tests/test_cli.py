"""The ``scratchy`` command: sessions subcommands, one-shot chat, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from scratchy import SessionManager
from scratchy.cli.main import cli

MESSAGES = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "How do I sort a list?"},
    {"role": "assistant", "content": "Use sorted()."},
]


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_sessions_list_show_export_import_rm(tmp_path: Path) -> None:
    sm = SessionManager()
    assert "No sessions yet" in run("sessions", "list").output
    sm.save_session("sorting", MESSAGES)
    out = run("sessions", "list").output
    assert out.split("\t")[:2] == ["sorting", "3"] and out.endswith("\tHow do I sort a list?\n")
    rows = json.loads(run("sessions", "list", "--json").output)
    assert rows[0]["id"] == "sorting" and rows[0]["message_count"] == 3
    show = run("sessions", "show", "sorting").output
    assert "Messages: 3" in show and "assistant: Use sorted()." in show
    result = run("sessions", "export", "sorting", "-o", "out.json")
    assert result.exit_code == 0 and json.loads(Path("out.json").read_text()) == MESSAGES
    assert "# sorting" in run("sessions", "export", "sorting", "--format", "md").output
    toon_text = run("sessions", "export", "sorting", "--format", "toon").output
    assert toon_text.startswith("session_id: sorting")
    Path("s.toon").write_text(toon_text)
    assert run("sessions", "import", "s.toon", "--id", "copy").exit_code == 0
    assert sm.load_session("copy") == MESSAGES
    assert run("sessions", "import", "out.json", "--id", "copy2").output == (
        "Imported 3 messages into 'copy2'\n"
    )
    again = run("sessions", "import", "out.json", "--id", "copy2")
    assert again.exit_code == 1 and "already exists" in again.output
    assert run("sessions", "rm", "copy", "copy2").output == (
        "Moved session 'copy' to the trash (undo: scratchy sessions restore copy)\n"
        "Moved session 'copy2' to the trash (undo: scratchy sessions restore copy2)\n"
    )
    missing = run("sessions", "rm", "copy")
    assert missing.exit_code == 1


def test_cli_errors_are_one_line_with_nonzero_exit(tmp_path: Path) -> None:
    result = run("sessions", "show", "nope")
    assert result.exit_code == 1 and "No session 'nope'" in result.output
    result = run("sessions", "show", "../etc")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Invalid session id '../etc'" in result.output
    Path("bad.json").write_text('[{"role": "robot"}]')
    result = run("sessions", "import", "bad.json", "--id", "x")
    assert result.exit_code == 1 and "message 0: field 'role'" in result.output
    Path("junk.txt").write_text("{{{ not json\n  : nor toon [")
    result = run("sessions", "import", "junk.txt", "--id", "x")
    assert result.exit_code == 1 and "neither JSON nor TOON" in result.output


SRC = Path(__file__).resolve().parents[1] / "src"


def scratchy_env(**extra: str) -> dict[str, str]:
    """The environment of a ``scratchy`` subprocess: this checkout's package first (an absolute
    path, since the command runs in another directory) and the echoing fake model."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, SCRATCHY_MODEL="fake:", PYTHONPATH=path, **extra)


def _scratchy(
    *args: str, input: str | None = None, cwd: Path, **env: str
) -> subprocess.CompletedProcess:
    """Run the real entry point, ``python -m scratchy.cli.main ARGS``, in a pipe."""
    return subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=scratchy_env(**env),
        timeout=60,
    )


def test_one_shot_chat_from_argument_and_stdin(tmp_path: Path) -> None:
    done = _scratchy("chat", "-s", "once", "What", "is", "TOON?", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "You said: What is TOON?\n"
    piped = _scratchy("chat", "-s", "once", input="And JSON?\n", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stdout == "You said: And JSON?\n"
    history = SessionManager(tmp_path / "scratchy" / "session_history").load_session("once")
    assert [m["content"] for m in history[1:]] == [
        "What is TOON?",
        "You said: What is TOON?",
        "And JSON?",
        "You said: And JSON?",
    ]


def test_one_shot_failure_exits_nonzero(tmp_path: Path) -> None:
    bad = _scratchy("chat", "-s", "x", "--model", "nosuch:model", "hi", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("Error: unknown provider 'nosuch'")
    assert "Traceback" not in bad.stderr
    empty = _scratchy("chat", "-s", "x", input="", cwd=tmp_path)
    assert empty.returncode == 2 and "Nothing to answer" in empty.stderr


def test_scratchy_without_subcommand_starts_chat(tmp_path: Path) -> None:
    done = _scratchy(input="hello\n", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "You said: hello\n"


def test_help_lists_commands(tmp_path: Path) -> None:
    out = run("--help").output
    assert "chat" in out and "sessions" in out
    out = run("sessions", "--help").output
    for name in ("list", "show", "export", "import", "rm"):
        assert name in out


def test_search_trash_restore_purge_cleanup(tmp_path: Path) -> None:
    sm = SessionManager()
    sm.save_session("sorting", MESSAGES)
    sm.create_session("empty")
    assert run("sessions", "search", "sorted").output == (
        "sorting  #2 assistant: Use [sorted]().\n"
    )
    assert run("sessions", "search", "nothing-like-this").exit_code == 1
    dry = run("sessions", "cleanup", "--empty")
    assert "Would move to the trash: empty (0 messages" in dry.output
    assert sm.session_exists("empty")
    assert run("sessions", "cleanup").exit_code == 2
    assert "Moved to the trash: empty" in run("sessions", "cleanup", "--empty", "--yes").output
    assert not sm.session_exists("empty")
    assert run("sessions", "trash").output.startswith("empty  deleted ")
    assert run("sessions", "restore", "empty").output == "Restored 'empty' (0 messages)\n"
    assert run("sessions", "restore", "empty").exit_code == 1
    run("sessions", "rm", "empty")
    assert "1 sessions would be deleted" in run("sessions", "purge").output
    assert run("sessions", "purge", "--older-than", "7d", "--yes").output == (
        "Purged 0 sessions from the trash.\n"
    )
    assert run("sessions", "purge", "--yes").output == "Purged 1 sessions from the trash.\n"
    assert run("sessions", "trash").output == "The trash is empty.\n"
    assert run("sessions", "purge", "--older-than", "soon").exit_code == 2


def test_export_redacts_secrets(tmp_path: Path) -> None:
    secret_chat = [
        {
            "role": "user",
            "content": "my key is sk-proj-abcdefghijklmnopqrstuvwx and\n"
            "OPENAI_API_KEY=sk-12345678901234567890\n"
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def\n"
            "db: postgresql://bob:hunter2@db.local/app\n"
            "cache: redis://:s3cretpw@cache:6379/0\n"
            "password = 'p@ss w0rd'",
        },
    ]
    SessionManager().save_session("secret", secret_chat)
    out = run("sessions", "export", "secret", "--redact").output
    for leaked in ("abcdefghijklmnop", "1234567890123", "eyJhbGci", "hunter2", "p@ss", "s3cret"):
        assert leaked not in out
    assert out.count("[REDACTED]") == 6
    assert "postgresql://bob:[REDACTED]@db.local/app" in out
    plain = run("sessions", "export", "secret").output
    assert "hunter2" in plain

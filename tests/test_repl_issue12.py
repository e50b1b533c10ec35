"""REPL regressions of issue 12, through real pseudo-terminals at several widths.

Each test runs the real ``run_agent.py`` with the scripted ``fake:`` model, as a user would:
stray bytes in the input, long replies and long session ids at 60, 80 and 120 columns, faithful
Markdown, Ctrl-C after an approval, ``/status`` against the store, ``/clear`` and ``/undo``,
the input history's permissions, and one-line errors for a model that cannot be loaded.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from scratchy import SessionManager

ROOT = Path(__file__).resolve().parents[1]
RUN_AGENT = ROOT / "run_agent.py"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[=>]|\r")
PROMPT = r"\[[^\]\n]+\] You: "
FANCY_PROMPT = r"\[[^\[\]\n\x1b]+\] You:(?=\x1b\[\d+D)"  # an empty prompt on a capable terminal


class Term:
    """``run_agent.py`` in a pseudo-terminal of the given width."""

    def __init__(
        self,
        cwd: Path,
        *args: str,
        model: str | None = "fake:",
        width: int = 120,
        term: str = "dumb",
        env: dict[str, str] | None = None,
    ) -> None:
        environ = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM=term, COLUMNS=str(width))
        environ.pop("LINES", None)
        environ["SCRATCHY_HISTORY_FILE"] = str(cwd / "history.txt")
        if term == "dumb":
            environ["NO_COLOR"] = "1"
        else:
            environ.pop("NO_COLOR", None)
        if model is None:
            environ.pop("SCRATCHY_MODEL", None)
        else:
            environ["SCRATCHY_MODEL"] = model
        environ.update(env or {})
        self.prompt = PROMPT if term == "dumb" else FANCY_PROMPT
        self.child = pexpect.spawn(
            sys.executable,
            [str(RUN_AGENT), *args],
            cwd=str(cwd),
            env=environ,
            encoding="utf-8",
            codec_errors="replace",
            timeout=30,
            dimensions=(30, width),
        )

    def wait_prompt(self, pattern: str | None = None, timeout: float = -1) -> str:
        """Wait for a prompt; return the output before it, without escape codes."""
        self.child.expect(pattern or self.prompt, timeout=timeout)
        return ANSI.sub("", self.child.before)

    def send(self, line: str, pattern: str | None = None) -> str:
        """Type ``line``; return what was printed up to the next prompt, minus the echo."""
        time.sleep(0.05)
        self.child.sendline(line)
        lines = self.wait_prompt(pattern).split("\n")
        return "\n".join(lines[1:] if lines and line[:20] in lines[0] else lines).strip("\n")

    def exit(self) -> tuple[str, int]:
        """``/exit``; return the farewell and the exit status."""
        time.sleep(0.05)
        self.child.sendline("/exit")
        self.child.expect(pexpect.EOF)
        out = ANSI.sub("", self.child.before or "")
        self.child.close()
        return out, self.child.exitstatus


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    (tmp_path / "scratchy" / "session_history").mkdir(parents=True)
    return tmp_path


def _store(cwd: Path) -> SessionManager:
    return SessionManager(cwd / "scratchy" / "session_history")


def _script(cwd: Path, replies: list, **options) -> str:
    path = cwd / "script.json"
    path.write_text(json.dumps({"replies": replies, **options}))
    return f"fake:{path}"


def _call(name: str, **args) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


def _scratchy(cwd: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, SCRATCHY_MODEL="fake:", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", *args],
        cwd=cwd, env=env, input=stdin, capture_output=True, timeout=60,
    )  # fmt: skip


# -- 1: a byte that is not UTF-8 ----------------------------------------------------------------


def test_a_stray_byte_is_replaced_and_the_session_stays_savable(cwd: Path) -> None:
    t = Term(cwd, "-s", "lat")
    t.wait_prompt()
    time.sleep(0.1)
    os.write(t.child.child_fd, b"caf\xe9\r")  # Latin-1 "é": not UTF-8
    out = t.wait_prompt()
    assert "You said: caf\ufffd" in out and "Error" not in out
    assert t.send("second").endswith("You said: second")
    assert "Saved: Yes" in t.send("/status")
    farewell, code = t.exit()
    assert "Your sessions are saved." in farewell and code == 0
    stored = _store(cwd).load_session("lat")
    assert [m["content"] for m in stored[1:]] == [
        "caf\ufffd",
        "You said: caf\ufffd",
        "second",
        "You said: second",
    ]


def test_a_stray_byte_on_stdin_is_replaced(cwd: Path) -> None:
    result = _scratchy(cwd, "chat", "-s", "lat", stdin=b"caf\xe9\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "You said: caf\ufffd\n"
    assert b"Traceback" not in result.stderr
    assert _store(cwd).load_session("lat")[1]["content"] == "caf\ufffd"


def test_exit_does_not_claim_a_save_that_did_not_happen(cwd: Path) -> None:
    t = Term(cwd, "-s", "gone")
    t.wait_prompt()
    t.send("keep this")
    _store(cwd).delete_session("gone")  # another process removes it meanwhile
    assert "Saved: No" in t.send("/status")
    farewell, code = t.exit()
    assert "Your sessions are saved" not in farewell
    assert "NOT saved: 'gone'" in farewell and code == 1


# -- 4 and 17: one clear line for bad input -------------------------------------------------------


def test_a_model_script_that_cannot_be_read(cwd: Path) -> None:
    t = Term(cwd, "-s", "m")
    t.wait_prompt()
    out = t.send("/model fake:/nonexistent.json")
    assert out.startswith("Error: fake model script /nonexistent.json does not exist")
    assert "\n" not in out
    assert t.send("/model") == "🧠 Model: fake:fake-model"
    assert t.send("still here").endswith("You said: still here")
    assert t.exit()[1] == 0
    (cwd / "bad.json").write_text("{not json")
    result = _scratchy(cwd, "chat", "-m", "fake:bad.json", "hello")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith("Error: fake model script bad.json is not valid JSON (")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    t = Term(cwd, "-m", "fake:bad.json")
    t.child.expect(pexpect.EOF)
    t.child.close()
    assert t.child.exitstatus == 1 and "Traceback" not in t.child.before


def test_export_format_without_a_value_and_history_zero(cwd: Path) -> None:
    t = Term(cwd, "-s", "small")
    t.wait_prompt()
    t.send("one")
    assert t.send("/export --format") == (
        "--format needs a value: md, json or toon (e.g. /export --format json)"
    )
    assert t.send("/export x.md --format --redact").startswith("--format needs a value")
    assert not list(cwd.glob("*.md"))
    usage = "Usage: /history [n] (n: how many of the last messages, 1 or more)"
    assert t.send("/history 0") == usage
    assert t.send("/history -1") == usage
    assert t.send("/history 1") == "assistant: You said: one"
    t.exit()


# -- 6: long replies wrap, at every width --------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("term", ["dumb", "xterm-256color"])
def test_long_replies_wrap_and_are_never_cut(cwd: Path, width: int, term: str) -> None:
    words = " ".join(f"w{i:03d}" for i in range(45))  # 224 characters
    t = Term(cwd, "-s", "wrap", width=width, term=term)
    t.wait_prompt()
    out = t.send(words)
    shown = out[out.rindex("Assistant:") :]
    assert re.sub(r"\s+", " ", shown).strip().endswith(f"You said: {words}")
    if term != "dumb":  # rich wraps the final reply itself: no line is wider than the screen
        assert all(len(line) <= width for line in shown.splitlines())
        assert len(shown.splitlines()) >= 224 // width + 1
    t.exit()
    assert _store(cwd).load_session("wrap")[-1]["content"] == f"You said: {words}"


# -- 7: what is shown is what is saved -----------------------------------------------------------


def test_markdown_keeps_every_character(cwd: Path) -> None:
    replies = [
        "See [docs](http://x.y) and <b>bold</b> and **strong**",
        "2*3*4 is 24 and \\*esc\\* stays",
        "**not rendered** now",
    ]
    t = Term(cwd, "-s", "md", model=_script(cwd, replies), term="xterm-256color", width=80)
    t.wait_prompt()
    first = t.send("one")
    assert "See docs (http://x.y) and <b>bold</b> and strong" in first
    assert "**strong**" not in first
    assert "2*3*4 is 24 and \\*esc\\* stays" in t.send("two")  # not clearly Markdown: as written
    assert t.send("/markdown off").startswith("Markdown: off")
    assert "**not rendered** now" in t.send("three")
    t.exit()


def test_no_markdown_flag(cwd: Path) -> None:
    t = Term(cwd, "--no-markdown", model=_script(cwd, ["**as written**"]), term="xterm-256color")
    t.wait_prompt()
    assert "**as written**" in t.send("hi")
    assert t.send("/markdown").startswith("Markdown: off")
    t.exit()


# -- 8: Ctrl-C after an approved tool call -------------------------------------------------------


def test_ctrl_c_cancels_a_tool_approved_with_y(cwd: Path) -> None:
    model = _script(cwd, [_call("run_command", command="sleep 8"), "done"])
    t = Term(cwd, "-s", "slow", model=model)
    t.wait_prompt()
    time.sleep(0.05)
    t.child.sendline("run it")
    t.child.expect_exact("[y/n/a(lways)]")
    time.sleep(0.1)
    t.child.sendline("y")
    time.sleep(0.8)
    started = time.monotonic()
    t.child.sendintr()
    out = t.wait_prompt(timeout=5)
    assert "⏹ Cancelled" in out and time.monotonic() - started < 5
    assert "Saved: Yes" in t.send("/status")
    t.exit()
    history = _store(cwd).load_session("slow")
    assert history[-1]["role"] == "tool" and "cancelled" in history[-1]["content"]


# -- 9: input is kept as typed --------------------------------------------------------------------


def test_indentation_is_kept(cwd: Path) -> None:
    t = Term(cwd, "-s", "indent")
    t.wait_prompt()
    t.send("    def f():")
    t.send("   ")  # an all-blank line is empty: nothing is sent
    t.exit()
    result = _scratchy(cwd, "chat", "-s", "indent", stdin=b"  first\n    second\n\n")
    assert result.returncode == 0, result.stderr
    contents = [m["content"] for m in _store(cwd).load_session("indent") if m["role"] == "user"]
    assert contents == ["    def f():", "  first\n    second"]


# -- 10: /status agrees with the store ------------------------------------------------------------


def test_status_agrees_with_the_store(cwd: Path) -> None:
    t = Term(cwd, "-s", "base")
    t.wait_prompt()
    status = t.send("/new fresh1") and t.send("/status")
    assert "Messages: 0" in status and "Saved: Yes" in status
    assert _store(cwd).session_info("fresh1").message_count == 0
    t.send("hello")
    assert "Messages: 3" in t.send("/status")
    _store(cwd).append_messages(
        "fresh1",
        [{"role": "user", "content": "from elsewhere"}, {"role": "assistant", "content": "ok"}],
    )
    status = t.send("/status")
    assert "Messages: 5" in status
    assert "Saved: Yes, and 2 newer messages are stored (/resume loads them)" in status
    assert "(5 messages)" in t.send("/resume fresh1")
    before = re.search(r"Last Activity: (.*)", t.send("/status")).group(1)
    time.sleep(1.1)
    t.send("/clear")
    status = t.send("/status")
    after = re.search(r"Last Activity: (.*)", status).group(1)
    assert after > before and "Messages: 1" in status and "Saved: Yes" in status
    t.exit()


# -- 11: /search, the // escape, /clear, echo, long ids ----------------------------------------


def test_search_escape_clear_and_undo(cwd: Path) -> None:
    t = Term(cwd, "-s", "words")
    t.wait_prompt()
    t.send("don't stop")
    assert "words #1 (user):" in t.send("/search don't stop")
    assert t.send("//usr/bin/python is slow").endswith("You said: /usr/bin/python is slow")
    assert "//" in t.send("/help")
    assert t.send("/clear now") == (
        "Usage: /clear (takes no arguments; it clears the current session)"
    )
    assert len(_store(cwd).load_session("words")) == 5
    assert t.send("/clear") == (
        "🧹 Cleared session 'words': 4 messages removed from the stored session (kept the "
        "system message). /undo now brings them back; /fork <id> first keeps a copy."
    )
    assert len(_store(cwd).load_session("words")) == 1
    assert t.send("/undo") == "↩ Restored the 5 messages of 'words' before /clear"
    assert [m["content"] for m in _store(cwd).load_session("words")[1:]][-1] == (
        "You said: /usr/bin/python is slow"
    )
    assert t.send("/undo") == "↩ Dropped the last turn (2 messages)"
    t.exit()


def test_search_with_an_apostrophe(cwd: Path) -> None:
    t = Term(cwd, "-s", "apos")
    t.wait_prompt()
    t.send("I don't know")
    hits = t.send("/search don't")
    assert "apos #1 (user)" in hits and "No closing quotation" not in hits
    assert t.send('/new "unclosed').startswith("Could not read the arguments of /new")
    t.exit()


def test_the_first_line_is_echoed_once(cwd: Path) -> None:
    t = Term(cwd, "-s", "echo")
    time.sleep(0.3)  # typed while the REPL is still starting: the terminal must not echo it
    t.child.sendline("unique-first-line")
    t.child.expect_exact("Assistant:")
    assert ANSI.sub("", t.child.before).count("unique-first-line") == 1
    t.wait_prompt()
    t.exit()


@pytest.mark.parametrize(("width", "length"), [(60, 128), (80, 70), (120, 128)])
def test_a_long_session_id_leaves_room_to_type(cwd: Path, width: int, length: int) -> None:
    sid = ("long-session-" * 10)[: length - 1] + "x"
    t = Term(cwd, "-s", sid, width=width)
    room = width // 3
    prompt = f"[{sid[: room - 1]}…] You: "
    before = t.wait_prompt(re.escape(prompt))
    assert before.strip() == ""  # no screenful of blank lines
    out = t.send("typing has room", re.escape(prompt))
    assert f"[{sid[: room - 1]}…] 🤖 Assistant: You said: typing has room" in out
    assert f"Session ID: {sid}" in t.send("/status", re.escape(prompt))  # in full here
    t.exit()
    assert _store(cwd).session_exists(sid)


# -- 12: the input history is private and where the docs say ------------------------------------


def test_input_history_is_private(cwd: Path) -> None:
    data = cwd / "data"
    env = {"XDG_DATA_HOME": str(data), "SCRATCHY_HISTORY_FILE": ""}
    t = Term(cwd, env=env)
    t.wait_prompt()
    t.send("a secret message")
    t.exit()
    path = data / "scratchy" / "history"
    assert "a secret message" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # an older, world-readable file is made private
    t = Term(cwd, env=env)
    t.wait_prompt()
    t.exit()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "~/.local/share/scratchy/history" in (ROOT / "docs" / "cli.md").read_text()


# -- 13: the embedded model says what it is --------------------------------------------------------


def test_the_embedded_model_says_it_is_a_demo(cwd: Path) -> None:
    notice = (
        "ℹ SmolLM2-135M (local:smollm2) is a tiny offline demo model. For real answers use "
        "--model, e.g. -m openai:gpt-4o-mini with OPENAI_API_KEY set, or set SCRATCHY_MODEL."
    )
    t = Term(cwd, "--no-tools", model=None)
    assert notice in re.sub(r"\s*\n\s*", " ", t.wait_prompt())
    status = t.send("/status")
    assert "Model: local:smollm2" in status
    assert notice in re.sub(r"\s*\n\s*", " ", status)
    t.exit()
    t = Term(cwd)  # a real model: no notice
    assert "demo model" not in t.wait_prompt()
    t.exit()

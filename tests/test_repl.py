"""The real REPL (``python run_agent.py``) driven through a pseudo-terminal with pexpect.

The model is the scripted ``fake:`` provider (echo, or a JSON script), so every line the user
guide shows can be compared exactly. Each test starts in a fresh working directory that already
holds a ``scratchy/session_history`` folder, the set-up that used to shadow the package.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pytest

from scratchy import SessionManager
from scratchy.history import validate

ROOT = Path(__file__).resolve().parents[1]
RUN_AGENT = ROOT / "run_agent.py"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
PROMPT = r"\[[\w.-]+\] You: "


class Term:
    """A REPL process with helpers that read its screen output without escape codes."""

    def __init__(
        self,
        cwd: Path,
        *args: str,
        model: str = "fake:",
        env: dict | None = None,
        columns: int = 120,
    ):
        environ = dict(
            os.environ,
            PROMPT_TOOLKIT_NO_CPR="1",
            NO_COLOR="1",
            TERM="dumb",
            SCRATCHY_MODEL=model,
            COLUMNS=str(columns),
            **(env or {}),
        )
        self.child = pexpect.spawn(
            sys.executable,
            [str(RUN_AGENT), *args],
            cwd=str(cwd),
            env=environ,
            encoding="utf-8",
            timeout=20,
            dimensions=(50, columns),
        )
        self.out = ""

    def wait_prompt(self, session: str | None = None) -> str:
        """Wait for the next prompt; return what was printed before it (clean)."""
        pattern = re.escape(f"[{session}] You: ") if session else PROMPT
        self.child.expect(pattern)
        text = ANSI.sub("", self.child.before)
        self.out += text + ANSI.sub("", self.child.after)
        return text

    def send(self, line: str, session: str | None = None) -> str:
        """Type a line, wait for the next prompt, return the output in between (without the
        echoed input line)."""
        time.sleep(0.05)  # let prompt_toolkit switch the terminal to raw mode first
        self.child.sendline(line)
        text = self.wait_prompt(session)
        lines = text.split("\n")
        return "\n".join(lines[1:] if lines and line in lines[0] else lines).strip("\n")

    def close(self) -> str:
        time.sleep(0.05)
        self.child.sendcontrol("d")
        self.child.expect(pexpect.EOF)
        self.child.close()
        return ANSI.sub("", self.child.before or "")


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    (tmp_path / "scratchy" / "session_history").mkdir(parents=True)  # the shadowing trap
    return tmp_path


def test_docs_example_workflow(cwd: Path) -> None:
    t = Term(cwd)
    t.wait_prompt("default")
    assert t.send("/new coding_task") == "✨ Created new session: 'coding_task'"
    out = t.send("Create a factorial function", "coding_task")
    assert out == "[coding_task] 🤖 Assistant: You said: Create a factorial function"
    status = t.send("/status").splitlines()
    assert status[:3] == [
        "📊 Current Session Status:",
        "   Session ID: coding_task",
        "   Messages: 3",
    ]
    assert re.fullmatch(r"   Created: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", status[3])
    assert re.fullmatch(r"   Last Activity: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", status[4])
    assert status[5] == "   Saved: Yes"
    assert t.send("/new research") == "✨ Created new session: 'research'"
    assert t.send("/resume coding_task") == "📂 Resumed session: 'coding_task' (3 messages)"
    assert "👋" in t.close()
    sm = SessionManager(cwd / "scratchy" / "session_history")
    assert sm.load_session("coding_task")[1:] == [
        {"role": "user", "content": "Create a factorial function"},
        {"role": "assistant", "content": "You said: Create a factorial function"},
    ]
    assert sm.session_exists("research")
    assert sorted(p.name for p in (cwd / "scratchy" / "session_history").glob("*.toon")) == [
        "coding_task_chat.toon",
        "research_chat.toon",
    ]


def test_slash_commands_and_bad_arguments(cwd: Path) -> None:
    t = Term(cwd, "--session", "alpha")
    t.wait_prompt("alpha")
    assert "Saved: No" in t.send("/status")  # nothing stored yet
    t.send("first question")
    t.send("second question")
    assert "Saved: Yes" in t.send("/status")
    assert t.send("/new") == "Usage: /new <id>"
    assert t.send("/new ../evil").startswith("Invalid session id '../evil'")
    assert t.send("/new alpha") == "Session 'alpha' already exists: use /resume alpha"
    assert t.send("/resume alpah") == (
        "No session 'alpah'. Did you mean /resume alpha? Create it with /new alpah"
    )
    assert (
        t.send("/stauts") == "Unknown command '/stauts'. Did you mean /status? "
        "Type /help for the list."
    )
    assert t.send("/history x") == (
        "Usage: /history [n] (n: how many of the last messages, 1 or more)"
    )
    help_text = t.send("/help")
    for name in (
        "/status",
        "/sessions",
        "/new <id>",
        "/resume <id>",
        "/clear",
        "/undo",
        "/history [n]",
        "/delete <id>",
        "/export",
        "/tools",
        "/model",
        "/exit",
    ):
        assert name in help_text
    assert t.send("/history 2") == ("user: second question\nassistant: You said: second question")
    assert t.send("/undo") == "↩ Dropped the last turn (2 messages)"
    assert "Messages: 3" in t.send("/status")
    assert t.send("/export out.md") == "💾 Exported 3 messages to out.md"
    assert "You said: first question" in (cwd / "out.md").read_text()
    assert t.send("/export data --format json") == "💾 Exported 3 messages to data"
    assert json.loads((cwd / "data").read_text())[1]["content"] == "first question"
    assert t.send("/export x --format pdf") == "Unknown format 'pdf': use md, json or toon"
    tools = t.send("/tools")
    assert "read_file" in tools and "run_command" in tools and "(asks first)" in tools
    assert t.send("/model") == "🧠 Model: fake:fake-model"
    assert t.send("/model nosuch:thing").startswith("Error: unknown provider 'nosuch'")
    t.send("/new beta")
    sessions = t.send("/sessions")
    assert sessions.splitlines()[0] == "📚 Sessions (2):"
    assert re.search(r" → beta\s+0 messages", sessions)
    assert re.search(r"   alpha\s+3 messages .*first question", sessions)
    assert (
        t.send("/delete beta") == "That is the current session: switch with /resume or /new first"
    )
    t.send("/resume alpha")
    assert t.send("/delete beta") == "🗑 Moved session 'beta' to the trash"
    assert t.send("/delete beta") == "No session 'beta'."
    assert t.send("/clear").startswith("🧹 Cleared session 'alpha': 2 messages removed")
    assert "Messages: 1" in t.send("/status")
    t.child.sendline("/quit")
    t.child.expect(pexpect.EOF)
    sm = SessionManager(cwd / "scratchy" / "session_history")
    assert [m["role"] for m in sm.load_session("alpha")] == ["system"]
    assert not sm.session_exists("beta")


def _script(cwd: Path, replies: list, **options) -> str:
    path = cwd / "script.json"
    path.write_text(json.dumps({"replies": replies, **options}))
    return f"fake:{path}"


def test_ctrl_c_during_a_streamed_reply(cwd: Path) -> None:
    t = Term(cwd, "-s", "cc", model=_script(cwd, ["word " * 400, "after"], delay=0.02, chunk=5))
    t.wait_prompt()
    time.sleep(0.05)
    t.child.sendline("talk a lot")
    t.child.expect_exact("🤖 Assistant: word")
    t.child.sendintr()
    out = t.wait_prompt()
    assert "⏹ Cancelled" in out
    status = t.send("/status")
    assert "Messages: 2" in status and "Saved: Yes" in status
    assert t.send("next").endswith("🤖 Assistant: after")
    t.close()
    history = SessionManager(cwd / "scratchy" / "session_history").load_session("cc")
    assert [m["content"] for m in history[1:]] == ["talk a lot", "next", "after"]


def test_ctrl_c_during_a_tool_call(cwd: Path) -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "run_command",
                    "arguments": json.dumps({"command": "sleep 30"}),
                },
            }
        ],
    }
    t = Term(cwd, "-s", "tool", "--approve", "allow", model=_script(cwd, [call, "ok"]))
    t.wait_prompt()
    time.sleep(0.05)
    t.child.sendline("sleep please")
    t.child.expect_exact("⚙ run_command(command=")
    time.sleep(0.3)
    t.child.sendintr()
    assert "⏹ Cancelled" in t.wait_prompt()
    status = t.send("/status")
    assert "Messages: 4" in status and "Saved: Yes" in status
    t.close()
    history = SessionManager(cwd / "scratchy" / "session_history").load_session("tool")
    assert validate(history) == []
    assert history[-1]["role"] == "tool" and "cancelled" in history[-1]["content"]


def test_tool_approval_prompt(cwd: Path) -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "write_file",
                    "arguments": json.dumps({"path": "hello.txt", "content": "hi"}),
                },
            }
        ],
    }
    t = Term(cwd, "-s", "ap", model=_script(cwd, [call, "wrote it", call, "refused"]))
    t.wait_prompt()
    time.sleep(0.05)
    t.child.sendline("write a file")
    t.child.expect_exact("Allow write_file(")
    time.sleep(0.05)
    t.child.sendline("y")
    assert "wrote it" in t.wait_prompt()
    assert (cwd / "hello.txt").read_text() == "hi"
    (cwd / "hello.txt").unlink()
    time.sleep(0.05)
    t.child.sendline("again")
    t.child.expect_exact("Allow write_file(")
    time.sleep(0.05)
    t.child.sendline("n")
    out = t.wait_prompt()
    assert "did not approve" in out and "refused" in out
    assert not (cwd / "hello.txt").exists()
    t.close()


def test_resume_after_restart(cwd: Path) -> None:
    t = Term(cwd, "--session", "keep")
    t.wait_prompt("keep")
    t.send("remember me")
    t.close()
    t = Term(cwd, "--session", "keep")
    t.wait_prompt("keep")
    assert "Messages: 3" in t.send("/status")
    assert "user: remember me" in t.send("/history")
    t.close()


def test_bad_session_id_on_the_command_line(cwd: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        [str(RUN_AGENT), "--session", "../x"],
        cwd=str(cwd),
        encoding="utf-8",
        timeout=20,
        env=dict(os.environ, NO_COLOR="1"),
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "Invalid session id '../x'" in child.before
    assert not (cwd.parent / "x_chat.toon").exists()


def test_fork_search_compact_and_multiline(cwd: Path) -> None:
    t = Term(cwd, "-s", "main")
    t.wait_prompt("main")
    t.send("tell me about factorials")
    time.sleep(0.05)
    t.child.send("line one\x1b\r")  # Esc+Enter: a new line, not sent yet
    time.sleep(0.05)
    t.child.send("line two\r")
    out = t.wait_prompt("main")
    assert "You said: line one\nline two" in out
    assert t.send("/fork side", "side") == "🍴 Forked 'main' into 'side' (5 messages)"
    t.send("only on the side", "side")
    hits = t.send("/search factorials", "side")
    assert "main #1 (user): tell me about [factorials]" in hits
    assert "side #1 (user): tell me about [factorials]" in hits
    assert t.send("/search zzzz", "side") == "No matches."
    assert t.send("/search") == "Usage: /search <words>"
    assert t.send("/compact", "side") == "Nothing to compact yet."
    t.close()
    sm = SessionManager(cwd / "scratchy" / "session_history")
    assert len(sm.load_session("main")) == 5 and len(sm.load_session("side")) == 7


def test_markdown_is_rendered_on_a_real_terminal(cwd: Path) -> None:
    model = _script(cwd, ["Here is **bold** and a list:\n\n- one\n- two"])
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm-256color", SCRATCHY_MODEL=model)
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(
        sys.executable,
        [str(RUN_AGENT)],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 100),
    )
    child.expect_exact("You:")
    time.sleep(0.1)
    child.sendline("show me")
    child.expect(r"•[ \x1b\[0-9;m]*two")
    raw = child.before
    time.sleep(0.2)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    raw += child.before
    screen = ANSI.sub("", raw)
    assert "**bold**" not in screen and "Here is bold and a list:" in screen
    assert "\x1b[1m" in raw  # bold is drawn as bold


def test_completion_of_commands_and_session_ids(tmp_path: Path) -> None:
    from prompt_toolkit.document import Document

    from scratchy import Agent
    from scratchy.cli.commands import SlashCompleter
    from scratchy.cli.repl import Repl
    from scratchy.testing import FakeProvider

    sm = SessionManager(tmp_path / "s")
    for sid in ("alpha", "alpine", "beta"):
        sm.create_session(sid)
    repl = Repl(Agent(provider=FakeProvider(), session_manager=sm), "alpha")
    completer = SlashCompleter(repl)

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), None)]

    assert complete("/res") == ["/resume"] and complete("/rel") == ["/reload"]
    assert set(complete("/")) >= {"/status", "/sessions", "/new", "/resume", "/clear"}
    assert sorted(complete("/resume al")) == ["alpha", "alpine"]
    assert complete("/delete b") == ["beta"]
    assert complete("/new al") == []  # a new id is not completed from existing ones
    assert complete("hello /re") == []


def test_input_history_persists_between_runs(cwd: Path) -> None:
    history = cwd / "history.txt"
    t = Term(cwd, env={"SCRATCHY_HISTORY_FILE": str(history)})
    t.wait_prompt()
    t.send("a question to remember")
    t.close()
    assert "a question to remember" in history.read_text()
    t = Term(cwd, env={"SCRATCHY_HISTORY_FILE": str(history)})
    t.wait_prompt()
    time.sleep(0.05)
    t.child.send("\x1b[A")  # arrow up recalls it
    time.sleep(0.2)
    t.child.send("\r")
    assert "You said: a question to remember" in t.wait_prompt()
    t.close()


def test_help_and_sessions_fit_a_narrow_terminal(cwd: Path) -> None:
    """At 60 columns nothing is cut mid-word by the terminal: /help puts each description under
    its command, /sessions shows the newest page and drops titles that would not fit."""
    from scratchy import SessionManager
    from scratchy.messages import assistant, user

    sm = SessionManager(dir=cwd / "scratchy" / "session_history")
    for i in range(55):
        sm.append_messages(f"s{i:02d}", [user(f"question number {i} " * 5), assistant("ok")])
    t = Term(cwd, "--session", "s54", columns=60)
    t.wait_prompt("s54")
    help_lines = t.send("/help").splitlines()
    assert max(len(line) for line in help_lines) <= 59
    usages = [line.strip() for line in help_lines if line.startswith("   /")]
    assert "/export [path] [--format md|json|toon] [--redact]" in usages
    assert "       Read this session again from the store (drops" in help_lines
    listing = t.send("/sessions").splitlines()
    assert listing[0] == "📚 Sessions (50 most recent):"
    assert listing[1].startswith(" → s54 ")
    assert len(listing) == 52 and "scratchy sessions list" in listing[-1]
    assert max(len(line) for line in listing[1:]) <= 59
    t.close()
    wide = Term(cwd, "--session", "s54", columns=120)
    wide.wait_prompt("s54")
    rows = wide.send("/sessions").splitlines()
    assert "question number 54" in rows[1]
    assert "/reload                  Read this session again" in wide.send("/help")
    wide.close()

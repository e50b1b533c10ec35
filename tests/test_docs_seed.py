"""Every snippet of the original session guide runs, and the project's guide still shows them.

The original guide (``tests/fixtures/seed-session-management.md``, vendored unchanged) is the
code existing users wrote against Scratchy. Its Python blocks run verbatim, in order, in one
namespace (top-level ``await`` allowed, as inside an ``async def``), in a fresh working
directory, with ``SCRATCHY_MODEL=fake:`` so that ``Agent()`` answers from the scripted
FakeProvider. The project's own ``docs/session-management.md`` (executed by ``test_docs.py``)
carries each of those blocks verbatim, except the few listed in ``REWRITTEN`` with the reason.
Nothing here reads outside the repository.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scratchy import SessionManager

SEED = Path(__file__).resolve().parent / "fixtures" / "seed-session-management.md"
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "session-management.md"

# Seed blocks the project's guide replaces by a better way (the seed's code still runs, below).
REWRITTEN = {
    "Session Metadata": "prints two sessions, not all, to keep the shown output short",
    "Custom Session Directory": "names the manager `custom`, so `sm` stays the default one",
    "Session Cleanup": "`sm.cleanup(empty=True, dry_run=False)` does it in one call",
    "3. Auto-Save Pattern": "the agent saves every turn; the manual save is shown as a no-op",
    "Corrupted Session File": "creates a damaged file first and prints the exception type",
    "Large Session Files": "`session.trim()` keeps the system message and tool results",
}


def blocks(lang: str, path: Path = SEED) -> list[tuple[str, str]]:
    """(heading, code) of every fenced block of ``lang`` in a guide (default: the seed)."""
    assert path.is_file(), f"the guide is missing: {path}"
    text = path.read_text(encoding="utf-8")
    out = []
    heading = ""
    for m in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        elif m.group(2) == lang:
            out.append((heading, m.group(3)))
    return out


def _lines(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip("\n").splitlines())


def test_the_project_guide_still_shows_the_seed_snippets() -> None:
    """Each seed Python block is in docs/session-management.md verbatim (trailing spaces
    aside), or listed in REWRITTEN; and what REWRITTEN lists really differs (no stale entry)."""
    guide = _lines(GUIDE.read_text(encoding="utf-8"))
    seed = dict(blocks("python"))
    assert set(REWRITTEN) <= set(seed)
    missing = [h for h, code in seed.items() if h not in REWRITTEN and _lines(code) not in guide]
    assert missing == [], f"docs/session-management.md lost seed snippets: {missing}"
    stale = [h for h in REWRITTEN if _lines(seed[h]) in guide]
    assert stale == [], f"shown verbatim again, drop from REWRITTEN: {stale}"


async def run_block(code: str, namespace: dict) -> None:
    compiled = compile(code, "<seed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # noqa: S307 - the product's own documentation
    if result is not None:
        await result


def test_the_guide_has_the_expected_blocks() -> None:
    names = [h for h, _ in blocks("python")]
    assert len(names) == 15
    assert names[0] == "Creating Sessions" and names[-1] == "Large Session Files"


async def test_every_python_snippet_runs_in_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCRATCHY_MODEL", "fake:")
    monkeypatch.delenv("SCRATCHY_SESSION_DIR", raising=False)
    ns: dict = {"__name__": "seed"}
    done: list[str] = []
    for heading, code in blocks("python"):
        if heading == "Session Import":
            Path("import.json").write_text(json.dumps([{"role": "user", "content": "imported"}]))
        if heading == "3. Auto-Save Pattern":
            ns.update(user_input="Keep going", session_id="customer_support_2025_11_22")
        if heading == "Corrupted Session File":
            broken = Path(f"scratchy/session_history/{ns['session_id']}_chat.toon")
            assert broken.is_file()
            broken.write_text("messages[3]:\n  - broken")
        await run_block(code, ns)
        done.append(heading)
        if heading == "Custom Session Directory":
            assert ns["sm"].location.endswith("my_custom_sessions")
            ns["sm"] = SessionManager()  # the guide's later snippets use the default directory
        if heading == "Creating Sessions":
            history = Path("scratchy/session_history")
            assert sorted(p.name for p in history.glob("*.toon")) == [
                "default_chat.toon",
                "my_project_chat.toon",
            ]
        if heading == "Session Export":
            assert json.loads(Path("export.json").read_text())[1]["content"] == "Hello"
        if heading == "Session Import":
            assert ns["sm"].load_session("imported_session") == [
                {"role": "user", "content": "imported"}
            ]
        if heading == "Corrupted Session File":
            assert not SessionManager().session_exists(ns["session_id"])
    assert len(done) == 15
    sm = SessionManager()
    ids = {s["id"] for s in sm.list_sessions()}
    assert {"my_project", "project_a", "project_b", "research", "debugging", "docs"} <= ids
    assert sm.load_session("project_a")[-1]["role"] == "assistant"


async def test_large_session_slice_then_chat_stays_valid(tmp_path: Path, monkeypatch) -> None:
    """The guide trims with ``[-50:]``; the next turn must still be a valid history."""
    monkeypatch.chdir(tmp_path)
    from scratchy import Agent
    from scratchy.history import validate
    from scratchy.testing import FakeProvider

    replies = []
    for i in range(40):
        replies += [FakeProvider.tool_call("list_files"), f"answer {i}"]
    agent = Agent(provider=FakeProvider(replies + ["after trim"]), tool_approval="allow")
    agent.load_default_tools()
    sm = SessionManager()
    session_id = "big"
    for i in range(40):
        await agent.chat(f"q{i}", session_id=session_id)
    ns = {"agent": agent, "sm": sm, "session_id": session_id}
    code = dict(blocks("python"))["Large Session Files"]
    await run_block(code, ns)
    assert len(sm.load_session(session_id)) == 50
    await agent.chat("next", session_id=session_id)
    sent = agent.provider.calls[-1].messages  # type: ignore[attr-defined]
    assert validate(sent) == []


async def test_regular_cleanup_deletes_only_old_sessions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sm = SessionManager()
    sm.save_session("recent", [{"role": "user", "content": "hi"}])
    old = Path("scratchy/session_history/old_chat.toon")
    old.write_text(
        json.dumps(
            {
                "session_id": "old",
                "messages": [],
                "created_at": (datetime.now() - timedelta(days=40)).isoformat(),
            }
        )
    )
    code = dict(blocks("python"))["2. Regular Cleanup"]
    await run_block(code, {"sm": sm})
    assert [s["id"] for s in sm.list_sessions()] == ["recent"]


def test_file_format_example_loads(tmp_path: Path) -> None:
    """The guide's file example (JSON, as the original wrote) is read, then saved as TOON."""
    [(_, example)] = [b for b in blocks("json")]
    d = tmp_path / "sessions"
    d.mkdir()
    (d / "my_project_chat.toon").write_text(example)
    sm = SessionManager(d)
    messages = sm.load_session("my_project")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    [row] = sm.list_sessions()
    assert row["created_at"] == "2025-11-22T20:30:15"
    sm.save_session("my_project", messages + [{"role": "user", "content": "more"}])
    assert (d / "my_project_chat.toon").read_text().startswith("format: scratchy-session/1")
    assert sm.session_info("my_project").created_at.isoformat().startswith("2025-11-22T20:30:15")


@pytest.mark.parametrize(
    "path", ["default_chat.toon", "my_project_chat.toon", "coding_task_chat.toon"]
)
def test_documented_file_names(tmp_path: Path, path: str) -> None:
    sm = SessionManager(tmp_path)
    sm.create_session(path.removesuffix("_chat.toon"))
    assert (tmp_path / path).is_file()

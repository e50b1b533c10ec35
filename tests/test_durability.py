"""Crash safety and concurrency of the TOON file store, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import toon_format

from scratchy import SessionManager

WRITER = r"""
import sys
from scratchy import SessionManager
sm = SessionManager(sys.argv[1])
big = "x" * 2000 + "\n" + "é🤖" * 500
i = 0
print("ready", flush=True)
while True:
    i += 1
    if i % 2:
        sm.append_messages("victim", [{"role": "user", "content": f"{i} {big}"}])
    else:
        msgs = sm.load_session("victim")
        sm.save_session("victim", msgs[-40:] + [{"role": "assistant", "content": str(i)}])
"""

APPENDER = r"""
import sys
from scratchy import SessionManager
directory, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sm = SessionManager(directory)
for i in range(count):
    sm.append_messages("shared", [{"role": "user", "content": f"{worker}-{i}"},
                                  {"role": "assistant", "content": f"ok {worker}-{i}"}])
"""


def test_sigkill_mid_save_never_leaves_a_torn_file(tmp_path: Path) -> None:
    d = tmp_path / "s"
    SessionManager(d).save_session("victim", [{"role": "system", "content": "start"}])
    for round_ in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(d)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.02 + (round_ % 5) * 0.013)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fresh = SessionManager(d)
        messages = fresh.load_session("victim")  # raises if the file were torn
        assert messages and messages[0]["role"] in ("system", "user", "assistant")
        text = (d / "victim_chat.toon").read_text()
        assert toon_format.decode(text)["messages"] == messages
        assert [r["id"] for r in fresh.list_sessions()] == ["victim"]
        [info] = SessionManager(d).list_page(limit=5).items
        assert info.message_count == len(messages)
    leftovers = list(d.glob(".tmp/*.tmp"))
    SessionManager(d).append_messages("victim", [{"role": "user", "content": "after"}])
    assert not list(d.glob(".tmp/victim_chat.toon.*.tmp")), leftovers
    assert not [p for p in d.iterdir() if p.is_file() and p.name.endswith(".tmp")]


def test_concurrent_appends_from_processes_lose_nothing(tmp_path: Path) -> None:
    d = tmp_path / "s"
    workers, count = 4, 40
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(d), f"w{w}", str(count)])
        for w in range(workers)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    messages = SessionManager(d).load_session("shared")
    contents = [m["content"] for m in messages]
    assert len(contents) == workers * count * 2
    expected = {f"w{w}-{i}" for w in range(workers) for i in range(count)}
    users = [c for c in contents if not c.startswith("ok ")]
    assert sorted(users) == sorted(expected)  # every message exactly once
    for i in range(0, len(contents), 2):  # each append stays together
        assert contents[i + 1] == f"ok {contents[i]}"
    for w in range(workers):  # and each worker's order is kept
        mine = [int(c.split("-")[1]) for c in users if c.startswith(f"w{w}-")]
        assert mine == sorted(mine)


def test_concurrent_agents_in_processes_share_a_session(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([f"reply {i}" for i in range(10)]))
    code = r"""
import asyncio, sys
from scratchy import Agent, SessionManager
async def main():
    agent = Agent(model=sys.argv[2], session_manager=SessionManager(sys.argv[1]))
    for i in range(10):
        await agent.chat(f"{sys.argv[3]} q{i}", session_id="team")
asyncio.run(main())
"""
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "s"), f"fake:{script}", name], env=env
        )
        for name in ("a", "b")
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    messages = SessionManager(tmp_path / "s").load_session("team")
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert sorted(users) == sorted(f"{n} q{i}" for n in "ab" for i in range(10))
    assert len(messages) == 41 and [m["role"] for m in messages].count("system") == 1


JOURNAL_APPENDER = r"""
import sys
from scratchy import SessionManager
from scratchy.stores import _journal
_journal.JOURNAL_AT = 4096  # small thresholds: journal appends and folds every few turns
_journal.FOLD_AT = 0.5
directory, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sm = SessionManager(directory)
pad = "p" * 300 + "é🤖"
print("ready", flush=True)
for i in range(count):
    sm.append_messages("big", [{"role": "user", "content": f"{worker}-{i} {pad}"},
                               {"role": "tool", "tool_call_id": "t", "content": f"r {pad}"}])
    print(f"{worker}-{i}", flush=True)
"""


def _acked(proc: subprocess.Popen) -> list[str]:
    assert proc.stdout is not None
    return [line.strip() for line in proc.stdout.read().splitlines() if "-" in line]


def _check_big(d: Path, acked: list[str]) -> list[str]:
    """Every acknowledged message is stored exactly once; the .toon file is a valid document
    holding a prefix of them."""
    messages = SessionManager(d).load_session("big")
    users = [m["content"].split(" ")[0] for m in messages if m["role"] == "user"]
    assert len(users) == len(set(users))  # nothing twice (not even unacknowledged ones)
    missing = set(acked) - set(users)
    assert not missing, sorted(missing)[:5]
    doc = toon_format.decode((d / "big_chat.toon").read_text())
    assert doc["messages"] == messages[: len(doc["messages"])]
    [row] = SessionManager(d).list_sessions()
    assert row["message_count"] == len(messages)
    [info] = SessionManager(d).list_page(limit=5).items  # the catalog's page sees them too
    assert info.message_count == len(messages)
    return users


def test_sigkill_during_journal_appends_and_folds_loses_no_acknowledged_turn(
    tmp_path: Path,
) -> None:
    d = tmp_path / "s"
    acked: list[str] = []
    inodes, journaled = set(), 0
    for round_ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", JOURNAL_APPENDER, str(d), f"r{round_}", "100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.15 + (round_ % 4) * 0.07)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        acked += _acked(proc)
        journaled += (d / ".journal" / "big.jsonl").exists()
        inodes.add((d / "big_chat.toon").stat().st_mtime_ns)
        _check_big(d, acked)
    assert len(acked) > 50 and journaled >= 3 and len(inodes) >= 3  # journal appends, and folds
    SessionManager(d).append_messages("big", [{"role": "user", "content": "after-0"}])
    users = _check_big(d, acked + ["after-0"])
    assert users[-1] == "after-0"


def test_processes_appending_to_a_journaled_session_keep_every_turn_once(tmp_path: Path) -> None:
    d = tmp_path / "s"
    workers, count = 3, 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", JOURNAL_APPENDER, str(d), f"w{w}", str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    victim = subprocess.Popen(
        [sys.executable, "-c", JOURNAL_APPENDER, str(d), "k", "100000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)  # killed among the others, at any point of its write
    victim.wait()
    acked = _acked(victim)
    for p in procs:
        assert p.wait(timeout=180) == 0
        acked += _acked(p)
    assert len(acked) >= workers * count
    users = _check_big(d, acked)
    for w in range(workers):  # each worker's order is kept
        mine = [int(u.split("-")[1]) for u in users if u.startswith(f"w{w}-")]
        assert mine == list(range(count))
    messages = SessionManager(d).load_session("big")
    for i, m in enumerate(messages):  # each append stays together
        if m["role"] == "user":
            assert messages[i + 1]["role"] == "tool"

"""Session store benchmark: save after one turn, load, and list, beside a plain-JSON baseline.

Run: ``python benchmarks/bench_store.py [--sessions 10000]``. Prints one table (milliseconds,
median of several runs). The baseline rewrites the whole session as JSON with ``json.dump`` and
fsync on every save (what a naive store does) and ``json.load``s it back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scratchy import SessionManager
from scratchy.stores.toon_files import TOONFileStore


def turn(i: int) -> list[dict]:
    """One realistic turn: a user question, a tool call, its result and an answer."""
    return [
        {"role": "user", "content": f"Question {i}: how do I read a file in Python?\nThanks!"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": "read_file",
                        "arguments": json.dumps({"path": f"src/m{i}.py"}),
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": f"call_{i}",
            "name": "read_file",
            "content": "def main():\n    with open('x') as f:\n        return f.read()\n" * 3,
        },
        {
            "role": "assistant",
            "content": "Use `open()` in a `with` block:\n\n```python\n"
            "with open('data.txt', encoding='utf-8') as f:\n    text = f.read()\n```\n"
            "This closes the file for you, even on errors. " * 2,
        },
    ]


def history(n: int) -> list[dict]:
    msgs = [{"role": "system", "content": "You are a helpful AI assistant."}]
    i = 0
    while len(msgs) < n:
        msgs += turn(i)
        i += 1
    return msgs[:n]


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def json_save(path: Path, messages: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"session_id": "x", "messages": messages}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def bench_size(root: Path, n: int, repeat: int) -> list[tuple[str, float, float]]:
    """Append one turn and load, at ``n`` messages, for scratchy and the JSON baseline."""
    msgs = history(n)
    one_turn = turn(99_999)
    d = root / f"h{n}"
    sm = SessionManager(d)
    sm.save_session("s", msgs)
    size = (d / "s_chat.toon").stat().st_size
    t_append = timed(lambda: sm.append_messages("s", one_turn), repeat)
    jpath = root / f"h{n}.json"
    json_save(jpath, msgs)
    t_json_save = timed(lambda: json_save(jpath, msgs + one_turn), repeat)
    cold = SessionManager(store=TOONFileStore(d))
    t_load = timed(lambda: cold.load_session("s"), repeat)
    t_json_load = timed(lambda: json.loads(jpath.read_bytes()), repeat)
    return [
        (f"save after one turn, {n:,} msgs ({size / 1e6:.1f} MB)", t_append, t_json_save),
        (f"load, {n:,} msgs", t_load, t_json_load),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_store_"))
    rows: list[tuple[str, float, float]] = []
    try:
        for n in (100, 1_000, 10_000):
            rows += bench_size(root, n, args.repeat)
        # listing
        d = root / "many"
        sm = SessionManager(d)
        base = history(50)
        for i in range(args.sessions):
            sm.save_session(f"session_{i:05d}", base)
        jdir = root / "many_json"
        jdir.mkdir()
        for i in range(args.sessions):
            (jdir / f"s{i}.json").write_text(json.dumps({"created_at": "x", "messages": base}))

        def json_list() -> None:
            out = []
            for p in jdir.iterdir():
                doc = json.loads(p.read_bytes())
                out.append((p.stem, doc["created_at"], len(doc["messages"])))

        SessionManager(store=TOONFileStore(d)).list_sessions()  # builds the catalog once
        t_list = timed(lambda: SessionManager(store=TOONFileStore(d)).list_sessions(), 5)
        t_list_cold = timed(
            lambda: (
                os.unlink(d / ".index" / "catalog.json"),
                SessionManager(store=TOONFileStore(d)).list_sessions(),
            ),
            3,
        )
        t_json_list = timed(json_list, 3)
        rows.append((f"list {args.sessions:,} sessions x 50 msgs", t_list, t_json_list))
        rows.append(("  (same, catalog deleted: rebuilt)", t_list_cold, t_json_list))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}"
    )
    print(f"{'operation':<48} {'scratchy ms':>12} {'json ms':>9}")
    for name, ours, base_ms in rows:
        print(f"{name:<48} {ours:>12.1f} {base_ms:>9.1f}")


if __name__ == "__main__":
    main()

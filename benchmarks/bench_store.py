"""Session store benchmark: append one turn, load and list, beside the floors, in one run.

Run: ``python benchmarks/bench_store.py [--sizes 1000,10000,100000] [--sessions 10000,100000]``.
Prints tables in milliseconds (median of several runs unless said otherwise):

* append one turn (4 messages, one a ~1 KB tool result) to a session of N messages: the median
  append, the mean over a whole journal cycle (it includes the fold, so it is the amortized
  cost) and the bytes written per turn (``wchar`` of ``/proc/self/io``) against the turn's TOON
  size; beside it, the naive store that rewrites the whole session as JSON with fsync;
* load N messages (a session of exactly N, before the appends), beside ``json.loads`` of the
  same messages, run alternately, with ``toons`` (``scratchy[fast]``) when installed and with
  the pure-Python decoder; then closing the session (which folds its journal);
* the first page of 20 among M sessions (new store, kept open, and just after a write by
  another store, when the catalog must first reconcile the directory's names), and the whole
  ``list_sessions()`` (new store and kept open), beside the floor (``os.scandir`` + ``stat``
  of the same files, run alternately) and ``json.loads`` of an M-entry index.

At 100,000 messages a journal cycle is ~10,000 turns; the amortized figures there are computed
from the measured parts (median journal append, one measured fold, turns per cycle).
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
from scratchy.stores import _journal as jr
from scratchy.stores.toon_files import TOONFileStore, encode_message

try:  # the optional compiled decoder (scratchy[fast]); absent from older trees
    from scratchy.stores import _toon_accel as accel
except ImportError:
    accel = None  # type: ignore[assignment]

TOOL_RESULT = "def main():\n    with open('x') as f:\n        return f.read()\n" * 17  # ~1 KB


def turn(i: int) -> list[dict]:
    """One coding-agent turn: a question, a tool call, its ~1 KB result and an answer."""
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
        {"role": "tool", "tool_call_id": f"call_{i}", "name": "read_file", "content": TOOL_RESULT},
        {
            "role": "assistant",
            "content": "Use `open()` in a `with` block:\n\n```python\n"
            "with open('data.txt', encoding='utf-8') as f:\n    text = f.read()\n```\n",
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


def timed_pair(ours: Callable[[], object], base: Callable[[], object], repeat: int) -> tuple:
    """Medians of ``ours`` and ``base`` run alternately (a loaded machine slows both alike)."""
    a, b = [], []
    for _ in range(repeat):
        b.append(timed(base, 1))
        a.append(timed(ours, 1))
    return statistics.median(a), statistics.median(b)


def wchar() -> int:
    """Bytes this process has passed to write() so far (Linux); 0 elsewhere."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def json_save(path: Path, messages: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"session_id": "x", "messages": messages}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def bench_size(root: Path, n: int, repeat: int) -> list[tuple[str, str, str]]:
    """Append one turn and load, at ``n`` messages."""
    msgs = history(n)
    d = root / f"h{n}"
    store = TOONFileStore(d)
    store.replace("s", msgs)
    size = (d / "s_chat.toon").stat().st_size
    # load exactly n messages (before any append), beside json.loads of the same messages
    raw = json.dumps(msgs).encode()
    t_load, t_json_load = timed_pair(
        lambda: TOONFileStore(d).load("s"), lambda: json.loads(raw), repeat
    )
    t_pure = t_json_pure = None
    if accel is not None and accel.accelerated():  # the pure-Python decoder, same run
        accel.ENABLED = False
        t_pure, t_json_pure = timed_pair(
            lambda: TOONFileStore(d).load("s"), lambda: json.loads(raw), repeat
        )
        accel.ENABLED = True
    turn_bytes = len("\n".join(encode_message(m) for m in turn(0)).encode()) + 1
    # median append (journal appends, or rewrites below the journal threshold)
    k = [0]

    def one() -> None:
        k[0] += 1
        store.append("s", turn(k[0]))

    t_median = timed(one, max(repeat, 15))
    # a whole journal cycle: from just after a fold to the next fold, included
    cycle_turns = (size * jr.FOLD_AT) / (turn_bytes * 1.25) if size >= jr.JOURNAL_AT else 1
    jpath = d / jr.JOURNAL_DIR / "s.jsonl"
    if size < jr.JOURNAL_AT or cycle_turns <= 3_000:
        while jpath.exists():  # finish the current cycle
            one()
        w0, t0, turns = wchar(), time.perf_counter(), 0
        while True:
            one()
            turns += 1
            if size < jr.JOURNAL_AT or not jpath.exists():
                break
        mean = (time.perf_counter() - t0) * 1000 / turns
        per_turn = (wchar() - w0) / turns
        how = f"measured over {turns} turns"
    else:  # too long to run here: journal appends measured, one fold measured
        w0, j0 = wchar(), jpath.stat().st_size if jpath.exists() else 0
        for _ in range(10):
            one()
        written = (wchar() - w0) / 10  # journal records and the catalog's rows
        cycle = size * jr.FOLD_AT / ((jpath.stat().st_size - j0) / 10)
        saved, jr.FOLD_AT = jr.FOLD_AT, 0.0
        w0, t0 = wchar(), time.perf_counter()
        one()  # folds
        t_fold, fold_bytes = (time.perf_counter() - t0) * 1000, wchar() - w0
        jr.FOLD_AT = saved
        mean = t_median + t_fold / cycle
        per_turn = written + fold_bytes / cycle
        how = f"computed: fold {t_fold:.0f} ms every {cycle:,.0f} turns"
    jfile = root / f"h{n}.json"
    json_save(jfile, msgs)
    t_json_save = timed(lambda: json_save(jfile, msgs + turn(0)), 5)
    one()  # a turn in the journal (past 256 KB), which closing the session folds
    t_close = timed(lambda: store.close_session("s"), 1)
    mb = size / 1e6
    return [
        (f"append one turn, {n:,} msgs ({mb:.1f} MB): median", f"{t_median:.1f}", ""),
        (f"  amortized ({how})", f"{mean:.1f}", f"{t_json_save:.1f} (json rewrite)"),
        (
            "  bytes written per turn",
            f"{per_turn / 1e3:,.1f} KB = {per_turn / turn_bytes:.1f}x turn",
            f"turn {turn_bytes / 1e3:.1f} KB",
        ),
        (
            f"load {n:,} msgs (new store)",
            f"{t_load:.1f} = {t_load / t_json_load:.1f}x json",
            f"{t_json_load:.1f} (json.loads)",
        ),
        ("  close the session (folds its journal, if any)", f"{t_close:.1f}", ""),
    ] + (
        [
            (
                f"load {n:,} msgs, pure-Python decoder (no toons)",
                f"{t_pure:.1f} = {t_pure / t_json_pure:.1f}x json",
                f"{t_json_pure:.1f} (json.loads)",
            )
        ]
        if t_pure is not None and t_json_pure is not None
        else []
    )


def bench_listing(root: Path, m: int, repeat: int) -> list[tuple[str, str, str]]:
    """First page of 20 and the whole listing among ``m`` sessions."""
    d = root / f"many{m}"
    store = TOONFileStore(d)
    store.replace("template", history(5))
    data = (d / "template_chat.toon").read_bytes()
    (d / "template_chat.toon").unlink()
    for i in range(m):  # the same small session under m names (the header's id is not used)
        (d / f"session_{i:06d}_chat.toon").write_bytes(data)
    TOONFileStore(d).list()  # builds the catalog once

    def floor() -> None:
        for entry in os.scandir(d):
            entry.stat()

    index = json.dumps({f"session_{i:06d}": [i, "2025-01-01", 5, "t"] for i in range(m)})
    reps = repeat if m <= 10_000 else 3
    time.sleep(0.2)  # let the directory time settle (see stores/_catalog.py)
    TOONFileStore(d).list_page(limit=20)
    t_page = timed(lambda: TOONFileStore(d).list_page(limit=20), reps)
    kept = TOONFileStore(d)
    kept.list_page(limit=20)
    t_page_kept = timed(lambda: kept.list_page(limit=20), reps)
    writer, after_write = TOONFileStore(d), []
    for i in range(reps):  # a small session written elsewhere: the directory changed
        writer.append(f"session_{i:06d}", turn(i))
        after_write.append(timed(lambda: TOONFileStore(d).list_page(limit=20), 1))
    t_page_written = statistics.median(after_write)
    t_list, t_floor = timed_pair(
        lambda: SessionManager(store=TOONFileStore(d)).list_sessions(), floor, reps
    )
    manager = SessionManager(store=TOONFileStore(d))
    manager.list_sessions()
    t_list_kept, t_floor2 = timed_pair(manager.list_sessions, floor, reps)
    t_index = timed(lambda: json.loads(index), reps)
    return [
        (f"first page of 20 among {m:,} sessions (new store)", f"{t_page:.1f}", ""),
        ("  (same, store kept open)", f"{t_page_kept:.1f}", ""),
        ("  (new store, just after a write elsewhere)", f"{t_page_written:.1f}", ""),
        (
            f"list_sessions(), {m:,} sessions (new store)",
            f"{t_list:.1f} = {t_list / t_floor:.1f}x floor",
            f"{t_floor:.1f} (scandir+stat)",
        ),
        (
            "  (same, store kept open)",
            f"{t_list_kept:.1f} = {t_list_kept / t_floor2:.1f}x floor",
            f"{t_floor2:.1f} (scandir+stat)",
        ),
        (f"  json.loads of a {m:,}-entry index", f"{t_index:.1f}", ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--sessions", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_store_"))
    rows: list[tuple[str, str, str]] = []
    try:
        for n in (int(x) for x in args.sizes.split(",") if x):
            rows += bench_size(root, n, args.repeat)
        for m in (int(x) for x in args.sessions.split(",") if x):
            rows += bench_listing(root, m, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}; load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'operation':<62} {'scratchy ms':>26}  baseline")
    for name, ours, base_ms in rows:
        print(f"{name:<62} {ours:>26}  {base_ms}")


if __name__ == "__main__":
    main()

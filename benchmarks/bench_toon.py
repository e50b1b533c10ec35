"""TOON codec benchmark: ``scratchy.toon`` vs ``json`` vs the reference ``toon_format``.

Run: ``python benchmarks/bench_toon.py [--sizes 100 1000 10000] [--repeat 7]``.

Encodes and decodes realistic chat sessions (header fields plus OpenAI-shaped
messages: multi-line text, ``null`` content with tool calls, tool results, content
parts) and prints one table in milliseconds (best of ``--repeat`` runs, garbage
collector enabled). ``ctoon`` (a C++ TOON library) is shown too when it is installed:
it is fast but not conformant (see the note printed below the table).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import toon_format

from scratchy import toon

try:
    import ctoon  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - optional
    ctoon = None

WORDS = (
    "the quick brown fox jumps over a lazy dog while reading files: main.py, utils.py and "
    'tests; it prints "hello, world" # then - 42 true null [x] {y} 3.14 naïve café'
).split(" ")


def make_session(n: int, seed: int = 0) -> dict[str, Any]:
    """A session of ``n`` messages, about 400 bytes each (10,000 messages: ~4 MB)."""
    rnd = random.Random(seed)

    def text(max_lines: int, max_words: int = 24) -> str:
        return "\n".join(
            " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, max_words)))
            for _ in range(rnd.randint(1, max_lines))
        )

    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent."}]
    call = 0
    while len(messages) < n:
        r = rnd.random()
        if r < 0.30:
            messages.append({"role": "user", "content": text(5)})
        elif r < 0.55:
            messages.append({"role": "assistant", "content": text(14)})
        elif r < 0.85:
            call += 1
            call_id = f"call_{call:08x}"
            arguments = {"path": f"src/pkg/module_{call}.py", "start": call, "limit": 200}
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "read_file", "arguments": json.dumps(arguments)},
                        }
                    ],
                }
            )
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "name": "read_file",
                    "content": text(20, 14),
                }
            )
        else:
            parts = [{"type": "text", "text": text(3)}, {"type": "text", "text": "Thanks!"}]
            messages.append({"role": "user", "content": parts})
    return {
        "format": "scratchy-session/1",
        "session_id": "01JBENCH0000000000000000",
        "title": "Benchmark: refactor the parser",
        "created_at": "2025-01-01T09:00:00Z",
        "updated_at": "2025-01-01T18:30:00Z",
        "messages": messages[:n],
    }


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement")
    parser.add_argument("--no-reference", action="store_true", help="skip toon_format (slow)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, toon_format "
          f"{toon_format.__version__}, best of {args.repeat} runs, milliseconds")  # fmt: skip
    columns = ["messages", "JSON KB", "TOON KB", "json dumps", "json loads"]
    columns += ["ours dumps", "ours loads"]
    if not args.no_reference:
        columns += ["toon_format dumps", "toon_format loads"]
    if ctoon is not None:
        columns += ["ctoon* dumps", "ctoon* loads"]
    widths = [max(8, len(c)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))

    for n in args.sizes:
        session = make_session(n)
        as_json = json.dumps(session)
        as_toon = toon.dumps(session)
        # Correctness before speed: a lossless round trip, byte-identical to the reference.
        assert toon.loads(as_toon) == session
        assert as_toon == toon_format.dumps(session)
        repeat = args.repeat if n <= 10000 else max(1, args.repeat // 3)
        row = [
            str(n),
            f"{len(as_json.encode()) / 1024:.0f}",
            f"{len(as_toon.encode()) / 1024:.0f}",
            f"{best_ms(partial(json.dumps, session), repeat):.2f}",
            f"{best_ms(partial(json.loads, as_json), repeat):.2f}",
            f"{best_ms(partial(toon.dumps, session), repeat):.2f}",
            f"{best_ms(partial(toon.loads, as_toon), repeat):.2f}",
        ]
        if not args.no_reference:
            slow = max(1, min(repeat, 3))
            row.append(f"{best_ms(partial(toon_format.dumps, session), slow):.2f}")
            row.append(f"{best_ms(partial(toon_format.loads, as_toon), slow):.2f}")
        if ctoon is not None:
            row.append(f"{best_ms(partial(ctoon.dumps, session), repeat):.2f}")
            row.append(f"{best_ms(partial(ctoon.loads, as_toon), repeat):.2f}")
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
        sys.stdout.flush()

    if ctoon is not None:
        print(
            "* ctoon is not conformant: it loses precision on integral floats >= 2**53, "
            "writes exponents without a sign (1e55), decodes subnormals such as 5e-324 as "
            "strings, and reports errors as RuntimeError without a line number."
        )


if __name__ == "__main__":
    main()

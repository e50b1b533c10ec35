"""What pricing model calls costs (``scratchy.cost``): loading genai-prices' data, then per call.

Run: ``python benchmarks/bench_cost.py``. "first priced call" runs in a fresh process (the price
data is imported then; in a turn, ``Agent`` starts that load in a background thread while the
model answers). "per call" is ``call_usage`` once the data is loaded, for a priced model
(``openai:gpt-4o-mini``) and for a free one (the scripted model, which never loads anything).
Times are medians.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

FIRST = """
import time
from scratchy.cost import call_usage
from scratchy.providers.base import ModelResponse, Usage
from scratchy.testing import FakeProvider
paid = FakeProvider([], name="openai", model="gpt-4o-mini")
response = ModelResponse({"role": "assistant", "content": "x"}, Usage(1000, 100))
start = time.perf_counter()
call_usage(paid, response)
print(time.perf_counter() - start)
"""


def per_call(provider: object, n: int = 2000) -> float:
    from scratchy.cost import call_usage
    from scratchy.providers.base import ModelResponse, Usage

    response = ModelResponse({"role": "assistant", "content": "x"}, Usage(1000, 100))
    call_usage(provider, response)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            call_usage(provider, response)
        runs.append((time.perf_counter() - start) / n)
    return statistics.median(runs)


def main() -> None:
    from scratchy.testing import FakeProvider

    firsts = [
        float(subprocess.run([sys.executable, "-c", FIRST], capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(5)
    ]  # fmt: skip
    first = statistics.median(firsts) * 1e3
    print(f"first priced call in a process (loads genai-prices): {first:.0f} ms")
    paid = FakeProvider([], name="openai", model="gpt-4o-mini")
    print(f"per priced call: {per_call(paid) * 1e6:.0f} µs")
    print(f"per free call:   {per_call(FakeProvider([])) * 1e6:.1f} µs")


if __name__ == "__main__":
    main()

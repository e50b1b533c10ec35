"""Prometheus text-format metrics of one worker process (``GET /metrics``).

Each worker counts its own requests; the ``worker`` label (the process id) tells them apart, so
a scraper that reaches every worker can sum them.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Counters, one gauge and one histogram, rendered as Prometheus text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.turns: Counter[str] = Counter()
        self.store_errors = 0
        self.active_streams = 0
        self._buckets = [0] * len(BUCKETS)
        self._turn_sum = 0.0
        self._turn_count = 0

    def request(self, route: str, method: str, status: int) -> None:
        """Count one answered request."""
        with self._lock:
            self.requests[(route, method, status)] += 1

    def turn(self, seconds: float, outcome: str) -> None:
        """Record one finished turn (``ok``, ``error``, ``cancelled``, ``busy``, ``replayed``)."""
        with self._lock:
            self.turns[outcome] += 1
            if outcome in ("ok", "error", "cancelled"):
                self._turn_sum += seconds
                self._turn_count += 1
                for i, bound in enumerate(BUCKETS):
                    if seconds <= bound:
                        self._buckets[i] += 1

    def store_error(self) -> None:
        """Count one failed store operation."""
        with self._lock:
            self.store_errors += 1

    def render(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        w = f'worker="{os.getpid()}"'
        out = [
            "# HELP scratchy_requests_total HTTP requests answered, by route and status.",
            "# TYPE scratchy_requests_total counter",
        ]
        with self._lock:
            for (route, method, status), n in sorted(self.requests.items()):
                route = route.replace("\\", "\\\\").replace('"', '\\"')
                out.append(
                    f'scratchy_requests_total{{{w},route="{route}",method="{method}",'
                    f'status="{status}"}} {n}'
                )
            out += [
                "# HELP scratchy_turns_total Agent turns, by outcome.",
                "# TYPE scratchy_turns_total counter",
            ]
            out += [f'scratchy_turns_total{{{w},outcome="{k}"}} {n}' for k, n in self.turns.items()]
            out += [
                "# HELP scratchy_turn_seconds Turn latency (model, tools and store).",
                "# TYPE scratchy_turn_seconds histogram",
            ]
            for bound, n in zip(BUCKETS, self._buckets, strict=True):
                out.append(f'scratchy_turn_seconds_bucket{{{w},le="{bound}"}} {n}')
            out.append(f'scratchy_turn_seconds_bucket{{{w},le="+Inf"}} {self._turn_count}')
            out.append(f"scratchy_turn_seconds_sum{{{w}}} {self._turn_sum:.6f}")
            out.append(f"scratchy_turn_seconds_count{{{w}}} {self._turn_count}")
            out += [
                "# HELP scratchy_active_streams Server-Sent Event streams open now.",
                "# TYPE scratchy_active_streams gauge",
                f"scratchy_active_streams{{{w}}} {self.active_streams}",
                "# HELP scratchy_store_errors_total Store operations that failed.",
                "# TYPE scratchy_store_errors_total counter",
                f"scratchy_store_errors_total{{{w}}} {self.store_errors}",
            ]
        return "\n".join(out) + "\n"

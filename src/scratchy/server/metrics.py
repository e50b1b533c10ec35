"""Prometheus metrics of the server (``GET /metrics``), through ``prometheus_client``.

With several worker processes every worker answers ``/metrics`` with the sum over all workers:
``scratchy serve --workers N`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory that the
workers share (``prometheus_client``'s multiprocess mode: each process writes its values to
memory-mapped files there, and a scrape merges them), so a scraper that reaches any worker
through the shared port sees the whole server. An application that runs :func:`create_app`
under its own process manager sets ``PROMETHEUS_MULTIPROC_DIR`` itself (an empty directory,
before the workers start), as ``prometheus_client`` documents. Without it the figures are
those of the process.
"""

from __future__ import annotations

import os
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The server's counters, a gauge and a histogram, rendered as Prometheus text."""

    def __init__(self) -> None:
        import prometheus_client as prom

        prom.disable_created_metrics()
        self._multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Multiprocess mode merges the files of every process at render time; otherwise the
        # metrics live in a registry of this instance (several apps in one process stay apart).
        self._registry: Any = None if self._multiprocess else prom.CollectorRegistry()
        reg = self._registry
        self._requests = prom.Counter(
            "scratchy_requests",
            "HTTP requests answered, by route and status.",
            ("route", "method", "status"),
            registry=reg,
        )
        self._turns = prom.Counter(
            "scratchy_turns", "Agent turns, by outcome.", ("outcome",), registry=reg
        )
        self._turn_seconds = prom.Histogram(
            "scratchy_turn_seconds",
            "Turn latency (model, tools and store).",
            buckets=BUCKETS,
            registry=reg,
        )
        self._streams = prom.Gauge(
            "scratchy_active_streams",
            "Server-Sent Event streams open now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._store_errors = prom.Counter(
            "scratchy_store_errors", "Store operations that failed.", registry=reg
        )
        self._store_errors.inc(0)
        self._active = 0

    def request(self, route: str, method: str, status: int) -> None:
        """Count one answered request."""
        self._requests.labels(route, method, str(status)).inc()

    def turn(self, seconds: float, outcome: str) -> None:
        """Record one finished turn (``ok``, ``error``, ``cancelled``, ``busy``, ``replayed``)."""
        self._turns.labels(outcome).inc()
        if outcome in ("ok", "error", "cancelled"):
            self._turn_seconds.observe(seconds)

    def store_error(self) -> None:
        """Count one failed store operation."""
        self._store_errors.inc()

    @property
    def active_streams(self) -> int:
        """Server-Sent Event streams open in this process (``+= 1`` / ``-= 1`` around one)."""
        return self._active

    @active_streams.setter
    def active_streams(self, value: int) -> None:
        self._active = value
        self._streams.set(value)

    def render(self) -> str:
        """The metrics in the Prometheus text exposition format (all workers' sums)."""
        import prometheus_client as prom

        registry = self._registry
        if registry is None:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return prom.generate_latest(registry).decode()


def fresh_multiproc_dir() -> str:
    """A new, empty directory for the workers' metric files, named after this process.

    Directories left by a supervisor that was killed (``SIGKILL`` skips its clean-up) are
    removed first: their name carries the supervisor's pid, and that process is gone.
    """
    import re
    import shutil
    import tempfile

    root = tempfile.gettempdir()
    for name in os.listdir(root):
        found = re.fullmatch(r"scratchy-metrics-(\d+)-\w+", name)
        if found and not _alive(int(found.group(1))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"scratchy-metrics-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True

"""Start-up of the command line: ``scratchy --help`` and time to the first REPL prompt.

Run: ``python benchmarks/bench_cli.py``. Time to first prompt is measured from process start
until ``[default] You:`` appears on a pseudo-terminal, with the default (embedded local) model,
which loads in the background after the prompt is shown. Medians of several runs.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[1]


def help_ms(runs: int = 10) -> float:
    exe = shutil.which("scratchy", path=str(Path(sys.executable).parent)) or "scratchy"
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def first_prompt_ms(runs: int = 7) -> float:
    times = []
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1")
    env.pop("SCRATCHY_MODEL", None)
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(runs):
            t = time.perf_counter()
            child = pexpect.spawn(
                sys.executable,
                [str(ROOT / "run_agent.py")],
                cwd=cwd,
                env=env,
                encoding="utf-8",
                timeout=30,
            )
            child.expect_exact("You:")
            times.append((time.perf_counter() - t) * 1000)
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
    return statistics.median(times)


def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}"
    )
    print(f"scratchy --help:        {help_ms():6.0f} ms")
    print(f"time to first prompt:   {first_prompt_ms():6.0f} ms")


if __name__ == "__main__":
    main()

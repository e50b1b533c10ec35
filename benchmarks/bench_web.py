"""The browser app, timed in a real browser (Playwright on Debian's chromium).

Run: ``python benchmarks/bench_web.py`` (``--sessions 10000`` by default; ``--quick`` for 1,000).
It fills a TOON file store (``--store sqlite``: a SQLite database) with ``--sessions`` short
sessions and one 10,000-message session,
starts the real ``scratchy serve`` on 127.0.0.1 and measures, inside the page (an init script
records ``performance.now()`` from a MutationObserver, so Playwright's polling is not counted):

- list visible: navigation start to the first rows of the sessions list on screen;
- long session: navigation start to the latest message of the 10,000-message session;
- search: the last keystroke of a query to its hits in the list (the page waits 60 ms after a
  keystroke before it asks, so typing does not send one request per key).

Each figure is the median of ``--repeat`` runs (default 7). Targets: 300, 500 and 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.server_helpers import ServerProc  # noqa: E402
from tests.web_helpers import launch, long_session  # noqa: E402

from scratchy.sessions import open_store  # noqa: E402

PROBE = """
(() => {
  window.__t = {};
  const seen = (name) => { if (!(name in window.__t)) window.__t[name] = performance.now(); };
  document.addEventListener("keydown", () => {
    window.__t.lastKey = performance.now(); delete window.__t.hits;
  }, true);
  new MutationObserver(() => {
    const list = document.getElementById("session-list");
    if (list && list.querySelector(".row:not(.hit)")) seen("rows");
    if (list && list.querySelector(".row.hit")) seen("hits");
    const msgs = document.getElementById("messages");
    if (msgs && msgs.querySelector('[data-index="9999"]')) seen("latest");
  }).observe(document, { childList: true, subtree: true });
})();
"""


def fill(where: str, sessions: int) -> None:
    store = open_store(where)
    long_session(store, "long", 10_000)
    start = time.perf_counter()
    for i in range(sessions):
        store.append(
            f"bench-{i:06d}",
            [
                {"role": "user", "content": f"question {i} about subject{i % 97} and w{i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ],
        )
    print(f"filled {sessions:,} sessions in {time.perf_counter() - start:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1,000 sessions, 3 repeats")
    parser.add_argument("--dir", help="keep the filled store here (reused when it exists)")
    parser.add_argument("--store", choices=["files", "sqlite"], default="files")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.repeat = 1_000, 3
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.dir) if args.dir else Path(tmp)
        if args.store == "sqlite":
            target: str = f"sqlite:///{directory / 'sessions.db'}"
            if not (directory / "sessions.db").exists():
                fill(target, args.sessions)
        else:
            target = str(directory / "sessions")
            if not (directory / "sessions").is_dir():
                fill(target, args.sessions)
        server = ServerProc(directory, "--model", "fake:", "--store", target, workers=1, keys=None)
        try:
            figures = measure(server.url, args.repeat)
        finally:
            server.close()
    head = f"{args.sessions:,} sessions ({args.store}), median of {args.repeat}"
    print(f"\nBrowser app, {head} (ms):")
    targets = {"list visible": 300, "10,000-message session, latest": 500, "search hits": 200}
    for name, values in figures.items():
        median = statistics.median(values)
        ok = "ok" if median <= targets[name] else "OVER"
        spread = f"{min(values):.0f}–{max(values):.0f}"
        print(f"  {name:34} {median:6.0f}   (range {spread}; target ≤ {targets[name]}: {ok})")


def measure(url: str, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "list visible": [],
        "10,000-message session, latest": [],
        "search hits": [],
    }
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(PROBE)
        page = context.new_page()
        page.goto(url + "/")  # warm: the browser's module cache, the server's first requests
        page.wait_for_selector(".row")
        page.goto(url + "/s/long")
        page.wait_for_selector('[data-index="9999"]')
        for _ in range(repeat):
            page.goto(url + "/")
            page.wait_for_function("() => window.__t && window.__t.rows")
            out["list visible"].append(page.evaluate("window.__t.rows"))
            page.goto(url + "/s/long")
            page.wait_for_function("() => window.__t && window.__t.latest")
            out["10,000-message session, latest"].append(page.evaluate("window.__t.latest"))
            page.wait_for_function("() => window.__t.rows")  # settled: its list is in too
        page.goto(url + "/")
        page.wait_for_selector(".row")
        for i in range(repeat):
            page.locator("#search").fill("")
            page.wait_for_timeout(150)
            page.locator("#search").click()
            page.keyboard.type(f"subject{i + 10}", delay=40)
            page.wait_for_function("() => window.__t.hits && window.__t.hits > window.__t.lastKey")
            out["search hits"].append(page.evaluate("window.__t.hits - window.__t.lastKey"))
        browser.close()
    return out


if __name__ == "__main__":
    main()

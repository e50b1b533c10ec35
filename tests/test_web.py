"""The browser app in a real browser: Playwright driving Debian's chromium against a real
``scratchy serve`` process (scripted model) on 127.0.0.1. Nothing is mocked."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scratchy.sessions import open_store
from tests.server_helpers import API_KEYS, KEYS, ServerProc
from tests.servers import free_port
from tests.web_helpers import browser, long_session, seed  # noqa: F401 - fixture

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect
expect.set_options(timeout=15_000)

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
FILLERS = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One single-owner server over seeded sessions (a 10,000-message one among them)."""
    directory = tmp_path_factory.mktemp("web")
    store = open_store(directory / "sessions")
    long_session(store, "long", 10_000)
    seed(store, fillers=FILLERS)
    proc = ServerProc(directory, "--agent", "tests.web_helpers:agent", workers=1, keys=None)
    yield proc
    proc.close()


class Watch:
    """What a page did that it must not: dialogs, page errors, requests to other origins."""

    def __init__(self, page: Any, origin: str) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.console: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((origin, "data:", "blob:")) else self.foreign.append(r.url)
            ),
        )

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def clean(self) -> None:
        assert self.dialogs == []
        assert self.errors == []
        assert self.foreign == []


def open_tool(tool: Any, name: str, args: str, output: str) -> Any:
    """Check a finished tool block's name and state, open it, check its arguments and result."""
    expect(tool.locator(".tool-name")).to_have_text(name)
    expect(tool.locator(".tool-state")).to_have_text("done")
    tool.locator("summary").click()
    expect(tool.locator(".tool-args")).to_contain_text(args)
    expect(tool.locator(".tool-output")).to_contain_text(output)
    return tool


@pytest.fixture
def page(browser: Any, server: ServerProc) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    pg = context.new_page()
    pg.watch = Watch(pg, server.url)
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    """Retake a screenshot of docs/images/ (only with SCRATCHY_SCREENSHOTS=1: a test run
    leaves the checkout as it was)."""
    png = page.screenshot()
    assert len(png) > 1000  # the page rendered
    if os.environ.get("SCRATCHY_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        (IMAGES / name).write_bytes(png)


# --- HTTP ------------------------------------------------------------------------------------


def test_page_and_assets_have_a_strict_csp(server: ServerProc) -> None:
    for path in ("/", "/s/tools-demo", "/trash", "/new"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "connect-src 'self'" in csp and "default-src 'none'" in csp
        assert "<script>" not in r.text and " on" not in r.text.split("<body>")[1].split("=")[0]
    tag = re.search(r'src="/static/([0-9a-f]{12})/app.js"', r.text).group(1)
    preloaded = re.findall(r'rel="modulepreload" href="/static/[0-9a-f]+/(\w+\.js)"', r.text)
    assert sorted(preloaded) == [
        "api.js",
        "charts.js",
        "highlight.js",
        "markdown.js",
        "memories.js",
        "session.js",
    ]
    for asset in ("app.js", "session.js", "markdown.js", "app.css"):
        r = httpx.get(f"{server.url}/static/{tag}/{asset}")
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in r.headers["cache-control"]
    assert httpx.get(f"{server.url}/static/old/app.js").headers["cache-control"] == "no-cache"
    for bad in (
        "/static/x/..%2F__init__.py",
        f"/static/{tag}/../../__init__.py",
        "/static/x/nope.js",
    ):
        r = httpx.get(server.url + bad)
        assert r.status_code == 404 and "error" in r.json(), bad


# --- list, search, open ------------------------------------------------------------------------


def test_list_newest_first_pages_and_opens_a_session(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/")
    rows = page.locator("#session-list .row")
    expect(rows.first).to_contain_text("Tour of the code base")
    expect(rows.nth(1)).to_contain_text("Hostile page <b>bold</b>")  # a title is text
    expect(page.locator("#activity svg")).to_be_visible()
    shot(page, "web-list.png")
    total = FILLERS + 4
    for _ in range(20):  # scroll the list: keyset pages of 50 arrive as the end comes near
        if rows.count() >= total:
            break
        page.locator("#sidebar").evaluate("el => el.scrollTop = el.scrollHeight")
        page.wait_for_timeout(300)
    assert rows.count() == total
    assert page.locator("#session-list .row[data-id='long']").count() == 1
    ids = page.locator("#session-list .row").evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert len(set(ids)) == total
    page.locator("#session-list .row[data-id='tools-demo'] a").click()
    expect(page).to_have_url(server.url + "/s/tools-demo")
    expect(page.locator("#s-title")).to_have_text("Tour of the code base")
    first_tool = page.locator("details.tool").first
    open_tool(first_tool, "list_files", '"pattern": "*.py"', "src/models.py")
    code = page.locator(".code").first
    expect(code.locator(".lang")).to_have_text("python")
    expect(code.locator(".tok-keyword").first).to_have_text("import")
    expect(page.locator(".md table")).to_contain_text("entry point")
    expect(page.locator("#usage-chart svg")).to_be_visible()
    # seeded turns recorded no usage: estimated, and labelled so
    expect(page.locator("#usage-chart .chart-head")).to_contain_text("all estimated")
    for d in page.locator("details.tool").all():
        d.evaluate("d => d.open = true")
    shot(page, "web-session-tools.png")
    page.reload()  # a link to /s/ID works when reloaded or shared
    expect(page.locator("#s-title")).to_have_text("Tour of the code base")
    page.watch.clean()


def test_search_as_you_type_shows_snippets_and_opens_the_hit(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#session-list .row").first).to_be_visible()
    page.keyboard.press("/")  # focuses search
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("uvicorn", delay=30)
    hit = page.locator("#session-list .row.hit")
    expect(hit).to_have_count(1)
    expect(hit.first).to_have_attribute("data-id", "tools-demo")
    expect(hit.locator("mark").first).to_have_text(re.compile("uvicorn", re.I))
    page.locator("#search").fill("topic3")
    expect(page.locator("#session-list .row.hit").first).to_contain_text("topic3")
    assert page.locator("#session-list .row:not(.hit)").count() == 0
    page.locator("#search").fill("zzzznothing")
    expect(page.locator("#list-status")).to_contain_text("Nothing matches")
    page.locator("#search").fill("uvicorn")
    page.locator("#session-list .row.hit a").first.click()
    expect(page).to_have_url(re.compile(r"/s/tools-demo\?at=\d+$"))
    expect(page.locator(".msg.target")).to_contain_text("uvicorn")
    page.locator("#search").fill("")
    expect(page.locator("#session-list .row:not(.hit)").first).to_be_visible()
    page.watch.clean()


def test_a_long_session_opens_at_its_end_and_loads_earlier_pages(
    page: Any, server: ServerProc
) -> None:
    page.goto(server.url + "/s/long")
    last = page.locator(".msg").last
    expect(last).to_contain_text("message 9999 of 10000")
    expect(page.locator("#earlier")).to_contain_text("9900 earlier messages")
    assert page.locator(".msg").count() == 100
    box = page.locator("#transcript")
    assert box.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 5
    box.evaluate("el => el.scrollTop = 0")
    expect(page.locator(".msg[data-index='9899']")).to_be_attached()
    before = page.locator(".msg[data-index='9900']").bounding_box()["y"]
    assert before > 0  # the reader keeps their place: what was on top is still near the top
    box.evaluate("el => el.scrollTop = 0")
    expect(page.locator(".msg[data-index='9799']")).to_be_attached()
    page.watch.clean()


def test_compacted_parts_expand_to_their_originals(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/s/compacted")
    summary = page.locator(".msg.summary")
    expect(summary).to_contain_text("We chose SQLite")
    expect(summary.locator("details.compacted summary")).to_contain_text("2 original messages")
    summary.locator("details.compacted summary").click()
    expect(summary.locator(".originals .msg")).to_have_count(2)
    expect(summary.locator(".originals")).to_contain_text("Which database should the cache use?")
    page.locator("#rename").click()  # Esc closes the open form first, then leaves the session
    expect(page.locator("#rename-form")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#rename-form")).to_be_hidden()
    page.locator("#messages").click()
    page.keyboard.press("Escape")
    expect(page).to_have_url(server.url + "/")


# --- untrusted content -----------------------------------------------------------------------


def test_injection_payloads_stay_inert(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/s/injection")
    expect(page.locator(".msg").last).to_contain_text("<script>window.__pwned")
    page.locator("details.tool summary").first.click()
    expect(page.locator(".tool-output").first).to_contain_text("<img src=x onerror=")
    for link in page.locator("#messages a").all():  # the only links: http(s), never javascript:
        assert link.get_attribute("href").startswith(("http://", "https://"))
    page.locator("#messages a", has_text="image: tracker").first.wait_for()
    dangerous = "#messages script, #messages img, #messages iframe, #messages svg, #messages style"
    assert page.locator(dangerous).count() == 0
    assert page.locator("[onerror], [onload], [onclick]").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#s-title")).to_have_text("Hostile page <b>bold</b>")
    # the same payloads typed into chat and coming back live from a tool
    page.locator("#input").fill("fetch the page " + "<img src=x onerror=alert(1)>")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant").last).to_contain_text("The tool said:")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator(dangerous).count() == 0
    page.watch.clean()


# --- chat --------------------------------------------------------------------------------------


def test_new_session_chat_streams_the_reply(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#session-list .row").first).to_be_visible()
    page.keyboard.press("n")
    expect(page).to_have_url(server.url + "/new")
    expect(page.locator("#s-title")).to_have_text("New session")
    box = page.locator("#input")
    expect(box).to_be_focused()
    box.type("first line")
    page.keyboard.press("Shift+Enter")
    box.type("second line, slow please")
    assert box.input_value() == "first line\nsecond line, slow please"
    page.keyboard.press("Enter")
    live = page.locator(".msg.live .md")
    expect(live).to_contain_text("word5")
    partial = live.inner_text()
    assert "word149" not in partial  # seen while it streams
    expect(page.locator("#stop")).to_be_visible()
    shot(page, "web-chat-streaming.png")
    expect(page.locator(".msg.assistant").last).to_contain_text("word149")
    expect(page.locator(".msg.live")).to_have_count(0)
    expect(page.locator("#stop")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/s/s_[0-9a-f]{16}$"))
    sid = page.url.rsplit("/", 1)[1]
    expect(page.locator(f"#session-list .row[data-id='{sid}']")).to_be_visible()
    expect(page.locator(".msg.user").first).to_contain_text("second line, slow please")
    with httpx.Client(base_url=server.url) as client:
        messages = client.get(f"/v1/sessions/{sid}/messages").json()["items"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "first line\nsecond line, slow please"
    page.watch.clean()


def test_tool_activity_shows_live(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/s/tools-demo")
    expect(page.locator(".msg").last).to_be_visible()
    page.locator("#input").fill("please add two numbers")
    page.locator("#send").click()
    expect(page.locator(".msg.assistant").last).to_contain_text("The tool said: 5")
    tool = open_tool(page.locator(".msg details.tool").last, "add", '"a": 2', "5")
    expect(tool.locator(".tool-output")).to_have_text("5")
    # the server's turn recorded its usage: its bar is measured, the seeded ones estimated
    expect(page.locator("#usage-chart .chart-head")).to_contain_text("estimated (pale)")
    last = page.locator("#usage-chart g.bar > title").last.text_content()
    with httpx.Client(base_url=server.url) as client:
        items = client.get("/v1/sessions/tools-demo/messages", params={"tail": 1}).json()["items"]
    usage = items[0]["usage"]
    assert f"{usage['input_tokens']} in, {usage['output_tokens']} out:" in last, last
    assert "estimated" not in last
    page.watch.clean()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server with two workers: Stop's cancel may reach either."""
    directory = tmp_path_factory.mktemp("web2")
    seed(open_store(directory / "sessions"), fillers=3)
    proc = ServerProc(directory, "--agent", "tests.web_helpers:agent", workers=2, keys=None)
    yield proc
    proc.close()


def test_stop_mid_reply_cancels_the_turn(browser: Any, two_workers: ServerProc) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    watch = Watch(page, two_workers.url)
    page.goto(two_workers.url + "/s/chat-00001")
    expect(page.locator(".msg")).to_have_count(2)
    page.locator("#input").fill("slow story")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.live .md")).to_contain_text("word3")
    page.locator("#stop").click()
    notice = page.locator("#messages .notice")
    expect(notice).to_contain_text("Stopped. Your message is kept")
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator(".msg.live")).to_have_count(0)
    expect(page.locator(".msg.user").last).to_contain_text("slow story")
    with httpx.Client(base_url=two_workers.url) as client:
        items = client.get("/v1/sessions/chat-00001/messages").json()["items"]
        # cancelled on the server: the input kept, no reply stored, and none comes later
        assert [m["role"] for m in items] == ["user", "assistant", "user"]
        time.sleep(1.5)
        assert client.get("/v1/sessions/chat-00001").json()["message_count"] == 3
    page.locator("#input").fill("and again")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant").last).to_contain_text("You said: and again")
    expect(notice).to_have_count(0)
    with httpx.Client(base_url=two_workers.url) as client:
        items = client.get("/v1/sessions/chat-00001/messages").json()["items"]
    assert [m["role"] for m in items] == ["user", "assistant", "user", "user", "assistant"]
    watch.clean()
    context.close()


# --- rename, fork, export, delete, restore ------------------------------------------------------


def test_rename_fork_export_delete_restore(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/s/chat-00010")
    expect(page.locator(".msg")).to_have_count(2)
    page.locator("#rename").click()
    page.locator("#rename-input").fill("Renamed in the browser")
    page.keyboard.press("Enter")
    expect(page.locator("#s-title")).to_have_text("Renamed in the browser")
    expect(page.locator("#session-list .row[data-id='chat-00010']")).to_contain_text(
        "Renamed in the browser"
    )
    with page.expect_download() as info:
        page.locator("#export-menu summary").click()
        page.locator("#export-json").click()
    download = info.value
    assert download.suggested_filename == "chat-00010.json"
    exported = json.loads(Path(download.path()).read_text())
    assert exported[0]["content"].startswith("Question number 10")
    with page.expect_download() as info:
        page.locator("#export-menu summary").click()
        page.locator("#export-md").click()
    assert "Question number 10" in Path(info.value.path()).read_text()
    with page.expect_download() as info:
        page.locator("#export-menu summary").click()
        page.locator("#export-toon").click()
    assert info.value.suggested_filename == "chat-00010.toon"
    # fork at the first message: a new session holding only it
    first = page.locator(".msg[data-index='0']")
    first.hover()
    first.locator(".fork-here").click()
    expect(page).to_have_url(re.compile(r"/s/s_[0-9a-f]{16}$"))
    expect(page.locator(".msg")).to_have_count(1)
    expect(page.locator(".msg").first).to_contain_text("Question number 10")
    expect(page.locator("#toast")).to_contain_text("Forked to")
    # delete to the trash, then restore from the trash view
    page.goto(server.url + "/s/chat-00010")
    expect(page.locator(".msg")).to_have_count(2)
    page.locator("#delete").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.locator("#toast")).to_contain_text("Moved chat-00010 to the trash")
    expect(page.locator("#session-list .row[data-id='chat-00010']")).to_have_count(0)
    page.locator("#tab-trash").click()
    row = page.locator("#trash-list .row[data-id='chat-00010']")
    expect(row).to_contain_text("Renamed in the browser")
    row.locator("button.restore").click()
    expect(page).to_have_url(server.url + "/s/chat-00010")
    expect(page.locator(".msg")).to_have_count(2)
    page.locator("#tab-trash").click()
    expect(page.locator("#trash-list")).not_to_contain_text("chat-00010")
    page.watch.clean()


# --- phone width -----------------------------------------------------------------------------


def test_phone_width_360(browser: Any, server: ServerProc) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    watch = Watch(page, server.url)
    page.goto(server.url + "/")
    expect(page.locator("#session-list .row").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    expect(page.locator("#main")).to_be_hidden()
    shot(page, "web-phone-list.png")
    page.locator("#session-list .row[data-id='tools-demo'] a").click()
    expect(page.locator("#s-title")).to_be_visible()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#back")).to_be_visible()
    expect(page.locator("#input")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("#rename", "#delete", "#send"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
    shot(page, "web-phone-session.png")
    page.locator("#back").click()
    expect(page.locator("#session-list")).to_be_visible()
    watch.clean()
    context.close()


def test_dark_theme_follows_the_system(browser: Any, server: ServerProc) -> None:  # noqa: F811
    colors = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
        page = context.new_page()
        page.goto(server.url + "/s/tools-demo")
        expect(page.locator("details.tool").first).to_be_visible()
        colors[scheme] = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        if scheme == "dark":
            shot(page, "web-dark.png")
        context.close()
    assert colors == {"light": "rgb(255, 255, 255)", "dark": "rgb(21, 23, 27)"}


# --- keys and owners -------------------------------------------------------------------------


def test_keys_two_owners_never_see_each_other(
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "sessions")
    store.scoped("alice").append("alice-notes", [{"role": "user", "content": "alice secret"}])
    store.scoped("bob").append("bob-notes", [{"role": "user", "content": "bob secret"}])
    proc = ServerProc(tmp_path, "--agent", "tests.web_helpers:agent", workers=1, keys=API_KEYS)
    try:
        for owner, mine, theirs in (
            ("alice", "alice-notes", "bob-notes"),
            ("bob", "bob-notes", "alice-notes"),
        ):
            context = browser.new_context()
            page = context.new_page()
            watch = Watch(page, proc.url)
            page.goto(proc.url + "/")
            dialog = page.locator("#key-dialog")
            expect(dialog).to_be_visible()
            page.locator("#key-input").fill("not-a-key")
            page.keyboard.press("Enter")
            expect(page.locator("#key-error")).to_contain_text("not accepted")
            page.locator("#key-input").fill(KEYS[owner])
            page.keyboard.press("Enter")
            expect(dialog).to_be_hidden()
            expect(page.locator(f"#session-list .row[data-id='{mine}']")).to_be_visible()
            assert page.locator("#session-list .row").count() == 1
            page.locator("#search").fill("secret")
            expect(page.locator("#session-list .row.hit")).to_have_count(1)
            expect(page.locator("#session-list .row.hit")).to_have_attribute("data-id", mine)
            page.goto(f"{proc.url}/s/{theirs}")  # the key is kept; another's session is missing
            expect(page.locator("#s-meta")).to_contain_text(f"No session '{theirs}'")
            page.goto(f"{proc.url}/s/{mine}")
            expect(page.locator(".msg").first).to_contain_text(f"{owner} secret")
            page.locator("#input").fill("hello from the browser")
            page.keyboard.press("Enter")
            expect(page.locator(".msg.assistant").last).to_contain_text("You said: hello")
            assert page.evaluate("localStorage.getItem('scratchy.apiKey')") == KEYS[owner]
            assert watch.dialogs == [] and watch.errors == [] and watch.foreign == []
            context.close()
        with httpx.Client(base_url=proc.url) as client:
            for owner, mine in (("alice", "alice-notes"), ("bob", "bob-notes")):
                headers = {"Authorization": f"Bearer {KEYS[owner]}"}
                listed = client.get("/v1/sessions", headers=headers).json()["items"]
                assert [s["id"] for s in listed] == [mine]
                assert client.get("/v1/trash").status_code == 401
    finally:
        proc.close()


# --- scratchy web ------------------------------------------------------------------------------


def _run_web(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    environ.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchy.cli.main", "web", "--port", str(port), *args],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"scratchy web did not start: {proc.stdout.read() if proc.stdout else ''}")


def _stop(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    return out


def test_scratchy_web_serves_the_local_sessions_and_opens_the_browser(tmp_path: Path) -> None:
    sessions = tmp_path / "mine"
    open_store(sessions).append("local-one", [{"role": "user", "content": "hello local"}])
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "browser.sh"  # $BROWSER: what webbrowser.open runs
    fake_browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    fake_browser.chmod(0o755)
    env = {"DISPLAY": ":0", "BROWSER": f"{fake_browser} %s", "SCRATCHY_API_KEYS": "x:y"}
    proc, url = _run_web(tmp_path, "--dir", str(sessions), "--model", "fake:", env=env)
    try:
        page = httpx.get(url + "/")
        assert (
            page.status_code == 200
            and "script-src 'self'" in page.headers["content-security-policy"]
        )
        listed = httpx.get(url + "/v1/sessions").json()[
            "items"
        ]  # no key asked: loopback, one owner
        assert [s["id"] for s in listed] == ["local-one"]
        reply = httpx.post(url + "/v1/sessions/local-one/turns", json={"input": "hi"}, timeout=30)
        assert reply.json()["reply"] == "You said: hi"
        deadline = time.monotonic() + 20
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text().strip() == url + "/"
    finally:
        out = _stop(proc)
    assert f"Scratchy web at {url}/ · sessions in {sessions}" in out
    assert len(open_store(sessions).load("local-one").messages) == 3


def test_scratchy_web_without_a_display_prints_the_address(tmp_path: Path) -> None:
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": "/bin/false"}
    proc, url = _run_web(tmp_path, "--model", "fake:", env=env)
    try:
        assert httpx.get(url + "/v1/sessions").json()["items"] == []
    finally:
        out = _stop(proc)
    assert "Open that address in your browser" in out
    assert f"sessions in {tmp_path / 'scratchy' / 'session_history'}" in out  # the REPL's


def test_scratchy_web_bad_options_get_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "scratchy.cli.main", "web", "--dir", "a", "--store", "b"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert run.stderr.strip() == "Error: give --dir or --store, not both"
    assert "Traceback" not in run.stderr + run.stdout

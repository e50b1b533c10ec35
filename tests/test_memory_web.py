"""The browser app's memory page (``/memories``) in chromium, over a real ``scratchy serve``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scratchy.memory import MemoryStore
from scratchy.sessions import open_store
from tests.server_helpers import ServerProc
from tests.web_helpers import browser  # noqa: F401 - fixture

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect
expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    directory: Path = tmp_path_factory.mktemp("web_memory")
    store = open_store(directory / "sessions")
    store.append("trip", [{"role": "user", "content": "I fly to Oslo on Friday"}])
    mem = MemoryStore(store)
    mem.remember("The user flies to Oslo on Friday", source={"session": "trip", "message": 0})
    mem.remember("The user prefers tabs", tags=["style"])
    proc = ServerProc(directory, "--model", "fake:", workers=1, keys=None)
    yield proc
    proc.close()


@pytest.fixture
def page(browser: Any, server: ServerProc) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    context.close()


def test_memory_page_lists_searches_adds_edits_and_forgets(page: Any, server: ServerProc) -> None:
    page.goto(server.url + "/")
    page.locator("#tab-memories").click()
    assert page.url.endswith("/memories")
    rows = page.locator("#memory-list .memory")
    expect(rows).to_have_count(2)
    expect(page.locator("#memory-status")).to_have_text("2 memories")
    oslo = page.locator("#memory-list .memory", has_text="Oslo")
    expect(oslo.locator(".memory-source")).to_have_text("from trip")

    page.locator("#memory-search").fill("tabs")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("The user prefers tabs")
    expect(rows.first.locator(".memory-tag")).to_have_text("style")
    page.locator("#memory-search").fill("")
    expect(rows).to_have_count(2)

    page.locator("#memory-new").fill("The user reviews code on Mondays")
    page.locator("#memory-tags").fill("work")
    page.locator("#memory-form button[type=submit]").click()
    expect(rows).to_have_count(3)
    expect(page.locator("#memory-status")).to_contain_text("Remembered m_")

    page.locator("#memory-new").fill("db password=hunter2")
    page.locator("#memory-form button[type=submit]").click()
    expect(page.locator("#memory-status")).to_contain_text("looks like a secret")
    expect(rows).to_have_count(3)

    monday = page.locator("#memory-list .memory", has_text="Mondays")
    monday.locator(".memory-edit").click()
    page.locator(".memory-edit-form input").fill("The user reviews code on Tuesdays")
    page.locator(".memory-edit-form button[type=submit]").click()
    tuesday = page.locator("#memory-list .memory", has_text="Tuesdays")
    expect(tuesday.locator(".memory-history")).to_have_text("was: The user reviews code on Mondays")
    tuesday.locator(".memory-forget").click()
    expect(rows).to_have_count(2)
    assert [m.text for m in MemoryStore(open_store(server_dir(server))).list()] == [
        "The user prefers tabs",
        "The user flies to Oslo on Friday",
    ]

    oslo.locator(".memory-source").click()  # to the message the memory came from
    expect(page.locator("#s-title")).to_have_text("I fly to Oslo on Friday")
    page.reload()
    page.goto(server.url + "/memories")  # a link to the page works when loaded directly
    expect(rows).to_have_count(2)
    assert page.errors == []


def server_dir(server: ServerProc) -> Path:
    """The session directory the server was started on."""
    return server.log_path.parent / "sessions"

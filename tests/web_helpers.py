"""Helpers of the browser tests: Debian's chromium driven by Playwright, and seeded sessions.

Playwright comes from PyPI; its own browser download (``playwright install``) cannot run here,
so the tests drive the ``chromium`` Debian package, installed with apt-get when missing (like
``tests/servers.py`` does for Redis and PostgreSQL).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_agents import add
from tests.servers import _apt_install

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
]

INJECTIONS = [
    "<script>window.__pwned = 'script'; alert('script')</script>",
    "<img src=x onerror=\"window.__pwned='img'; alert('img')\">",
    "[click me](javascript:window.__pwned='link';alert('link'))",
    '<a href="javascript:alert(1)">html link</a>',
    "![tracker](http://203.0.113.9/pixel.png)",
    '<iframe src="http://203.0.113.9/frame"></iframe>',
    "<svg onload=\"alert('svg')\"><circle r=4 /></svg>",
    '<style>body{background:url("http://203.0.113.9/bg.png")}</style>',
]


def find_chromium() -> str:
    """Debian's chromium (installed from the package when missing)."""
    if not Path(CHROMIUM).exists():
        _apt_install("chromium")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        raise RuntimeError("chromium is not installed and could not be installed")
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


def launch(playwright: Any) -> Any:
    """A headless chromium browser."""
    return playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for a test module."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def _tool_turn(question: str, name: str, args: dict[str, Any], result: str, answer: str) -> list:
    call_id = f"call_{abs(hash((question, name))) % 10**8}"
    return [
        {"role": "user", "content": question},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "name": name, "content": result},
        {"role": "assistant", "content": answer},
    ]


TOOLS_SESSION = [
    {"role": "system", "content": "You are a careful coding assistant."},
    *_tool_turn(
        "Which Python files are in src/?",
        "list_files",
        {"path": "src", "pattern": "*.py"},
        "src/app.py\nsrc/models.py\nsrc/routes.py",
        "There are **three** modules:\n\n- `app.py`\n- `models.py`\n- `routes.py`",
    ),
    *_tool_turn(
        "Show me how app.py starts the server.",
        "read_file",
        {"path": "src/app.py", "limit": 40},
        "import uvicorn\nfrom .routes import api\n\nuvicorn.run(api, port=8000)",
        "It hands the router to uvicorn:\n\n```python\nimport uvicorn\nfrom .routes import api\n\n"
        "def main() -> None:\n    # port 8000 unless told otherwise\n"
        "    uvicorn.run(api, port=8000)\n"
        "```\n\n| file | role |\n|---|---|\n| app.py | entry point |\n| routes.py | HTTP routes |",
    ),
]

INJECTION_SESSION = [
    {"role": "user", "content": "Summarise this page:\n\n" + "\n\n".join(INJECTIONS)},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_inj",
                "type": "function",
                "function": {
                    "name": "fetch_page",
                    "arguments": json.dumps({"html": INJECTIONS[0]}),
                },
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "call_inj",
        "name": "fetch_page",
        "content": "\n".join(INJECTIONS),
    },
    {"role": "assistant", "content": "The page says:\n\n" + "\n\n".join(INJECTIONS)},
]

COMPACTED_SESSION = [
    {
        "role": "user",
        "content": "[Summary of the earlier conversation]\nWe chose SQLite for the cache.",
        "compacted": [
            {"role": "user", "content": "Which database should the cache use?"},
            {"role": "assistant", "content": "SQLite: one file, no server, fast enough."},
        ],
    },
    {"role": "user", "content": "Remind me why?"},
    {"role": "assistant", "content": "Because it is one file with no server to run."},
]


def seed(store: Any, *, fillers: int = 30) -> None:
    """Sessions for the browser tests: tool calls, injection payloads, a compacted history and
    ``fillers`` short chats (oldest first; ``tools-demo`` is the newest)."""
    for i in range(fillers):
        sid = f"chat-{i:05d}"
        messages = [
            {"role": "user", "content": f"Question number {i} about topic{i % 7}"},
            {"role": "assistant", "content": f"Answer {i}: see *topic{i % 7}*."},
        ]
        store.append(sid, messages)
    store.append("compacted", COMPACTED_SESSION)
    store.append("injection", INJECTION_SESSION)
    store.update_header("injection", title="Hostile page <b>bold</b>")
    store.append("tools-demo", TOOLS_SESSION)
    store.update_header("tools-demo", title="Tour of the code base")


def long_session(store: Any, sid: str, count: int) -> None:
    """A session of ``count`` messages (user/assistant pairs), appended in chunks."""
    chunk: list[dict[str, Any]] = []
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        chunk.append({"role": role, "content": f"message {i} of {count}"})
        if len(chunk) == 1000:
            store.append(sid, chunk)
            chunk = []
    if chunk:
        store.append(sid, chunk)


# --- the agent the browser tests serve (scratchy serve --agent tests.web_helpers:agent) -------

LONG_REPLY = " ".join(f"word{i}" for i in range(150))


def fetch_page(url: str) -> str:
    """Fetch a web page (here: a hostile one).

    Args:
        url: The address.
    """
    return "\n".join(INJECTIONS)


def _script(messages: list[dict[str, Any]], tools: Any) -> Any:
    from scratchy.testing import FakeProvider

    last = messages[-1]
    if last.get("role") == "tool":
        return f"The tool said: {last.get('content')}"
    text = str(last.get("content"))
    if "add" in text:
        return FakeProvider.tool_call("add", a=2, b=3)
    if "fetch" in text:
        return FakeProvider.tool_call("fetch_page", url="http://203.0.113.9/")
    if "slow" in text:
        return LONG_REPLY
    if "markdown" in text:
        return "Here is **bold** and code:\n\n```python\ndef f(x):\n    return x + 1\n```\n"
    return f"You said: {text}"


def agent() -> Any:
    """A scripted agent: echoes; ``add`` and ``fetch`` call tools; ``slow`` streams a long
    reply (one 3-character delta every 20 ms)."""
    from scratchy import Agent
    from scratchy.testing import FakeProvider

    provider = FakeProvider(_script, delay=0.02, chunk=3)
    return Agent(provider=provider, tools=[add, fetch_page], system_prompt=None)

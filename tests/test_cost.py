"""Costs (``scratchy.cost``): each model call priced from genai-prices' installed data, summed in
the store-owned usage totals exactly, across a resume and across processes; unknown models shown
as unknown, never guessed; the CLI and server showing them."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from scratchy import Agent, SessionManager
from scratchy import cost as cost_mod
from scratchy.cost import Cost, call_usage, format_usd, price_of_call, pricing_of
from scratchy.errors import UsageError
from scratchy.providers.base import ModelResponse, Usage
from scratchy.stores.base import _add_usage
from scratchy.testing import FakeProvider

from .test_cli import SRC, _scratchy, scratchy_env
from .test_cli_list import sessions_in_terminal

HISTORY = Path("scratchy") / "session_history"


def reply(text: str, inp: int, out: int, **cache: int) -> ModelResponse:
    return ModelResponse({"role": "assistant", "content": text}, Usage(inp, out, **cache))


def genai_nano(model: str, provider_id: str, **counts: int) -> int:
    """What genai-prices itself says, in nano-dollars (the expected value of the tests)."""
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    price = calc_price(PriceUsage(**counts), model, provider_id=provider_id).total_price
    return int(price * 10**9)


def usd(nano: int) -> str:
    """Nano-dollars as the exact decimal text of the JSON and pipe output."""
    return format(Decimal(nano).scaleb(-9).normalize(), "f")


def mini(replies: list) -> FakeProvider:
    return FakeProvider(replies, name="openai", model="gpt-4o-mini")


# --- pricing one call --------------------------------------------------------------------------


def test_a_known_model_costs_what_its_price_data_says() -> None:
    nano = price_of_call(mini([]), Usage(1000, 100))
    assert nano == genai_nano("gpt-4o-mini", "openai", input_tokens=1000, output_tokens=100)
    assert nano == 150 * 1000 + 600 * 100  # $0.15 and $0.60 per million tokens


def test_cached_input_tokens_are_billed_at_the_cache_rate() -> None:
    plain = price_of_call(mini([]), Usage(10_000, 10))
    cached = price_of_call(mini([]), Usage(10_000, 10, cache_read_tokens=8_000))
    expected = genai_nano(
        "gpt-4o-mini", "openai", input_tokens=10_000, output_tokens=10, cache_read_tokens=8_000
    )
    assert cached == expected and cached < plain


@pytest.mark.parametrize(
    "name, model, url, kind",
    [
        ("openai", "gpt-4o-mini", None, "priced"),
        ("openai", "no-such-model-9", None, "unpriced"),
        ("groq", "llama-3.1-8b-instant", "https://api.groq.com/openai/v1", "priced"),
        ("gemini", "gemini-2.0-flash", "https://generativelanguage.googleapis.com/v1beta/openai/",
         "priced"),
        ("anthropic", "claude-sonnet-4-20250514", None, "priced"),
        ("openai-compatible", "deepseek-chat", "https://api.deepseek.com/v1", "priced"),
        ("openai-compatible", "qwen", "http://127.0.0.1:8080/v1", "unpriced"),
        ("openai", "gpt-4o-mini", "http://127.0.0.1:4000/v1", "unpriced"),  # a proxy? unknown
        ("mistral", "mistral-large-latest", None, "priced"),
        ("my-own", "x", None, "unpriced"),
        ("local", "smollm2", None, "free"),
        ("ollama", "llama3.2", "http://127.0.0.1:11434/v1", "free"),
        ("ollama", "gpt-oss:120b-cloud", "http://127.0.0.1:11434/v1", "unpriced"),
        ("fake", "fake-model", None, "free"),
    ],
)  # fmt: skip
def test_which_prices_apply(name: str, model: str, url: str | None, kind: str) -> None:
    pricing = pricing_of(SimpleNamespace(name=name, model=model, base_url=url))
    assert pricing.kind == kind, pricing
    text = pricing.describe()
    if kind == "priced":
        assert text.endswith("per 1M tokens") and text.startswith("$")
    else:
        assert text.startswith("free (" if kind == "free" else "unknown (")


def test_the_built_in_presets_are_priced_by_their_vendor() -> None:
    from scratchy.providers import resolve_provider

    for spec, provider_id in (("groq:llama-3.1-8b-instant", "groq"), ("gemini:", "google")):
        pricing = pricing_of(resolve_provider(spec, api_key="test-key"))
        assert (pricing.kind, pricing.provider_id) == ("priced", provider_id)


def test_prices_come_from_the_installed_data_even_when_someone_fetched_others() -> None:
    """A snapshot set at run time (what genai-prices' opt-in UpdatePrices does) is not used."""
    from genai_prices import data_snapshot

    before = price_of_call(mini([]), Usage(1000, 100))
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot([], from_auto_update=True))
    try:
        assert price_of_call(mini([]), Usage(1000, 100)) == before
    finally:
        data_snapshot.set_custom_snapshot(None)


def test_without_genai_prices_every_paid_call_is_unpriced(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)
    monkeypatch.setitem(sys.modules, "genai_prices.data", None)
    monkeypatch.setattr(cost_mod, "_snapshot", None)
    monkeypatch.setattr(cost_mod, "_missing", None)
    monkeypatch.setattr(cost_mod, "_cache", {})
    pricing = pricing_of(mini([]))
    assert pricing.kind == "unpriced" and "pip install genai-prices" in pricing.reason
    assert call_usage(mini([]), reply("x", 5, 1)) == {
        "input_tokens": 5, "output_tokens": 1, "unpriced_calls": 1, "costed_tokens": 6,
    }  # fmt: skip
    assert pricing_of(SimpleNamespace(name="local", model="m")).kind == "free"


def test_a_call_without_token_counts_is_unpriced_unless_free() -> None:
    no_usage = ModelResponse({"role": "assistant", "content": "hi"})
    assert call_usage(mini([]), no_usage) == {"unpriced_calls": 1}
    local = SimpleNamespace(name="local", model="smollm2")
    assert call_usage(local, no_usage) == {"cost_nano_usd": 0, "priced_calls": 1}


# --- amounts as text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nano, text, floor",
    [
        (0, "$0", "$0"),
        (1, "$0.000000001", "$0.000000001"),
        (4_249, "$0.0000042", "$0.0000042"),
        (210_000, "$0.00021", "$0.00021"),
        (9_999_999, "$0.0100", "$0.0099"),
        (12_345_678, "$0.0123", "$0.0123"),
        (999_999_999, "$1.00", "$0.9999"),
        (1_234_567_890_123, "$1,234.57", "$1,234.56"),
    ],
)
def test_amounts_as_text(nano: int, text: str, floor: str) -> None:
    assert format_usd(nano) == text
    assert format_usd(nano, at_least=True) == floor


def test_totals_stay_exact_over_many_calls() -> None:
    """10,000 calls of $0.0001 are $1 exactly (as floats they would not be)."""
    totals = None
    for _ in range(10_000):
        totals = _add_usage(totals, {"cost_nano_usd": 100_000, "priced_calls": 1})
    cost = Cost.of(totals)
    assert cost.usd == Decimal(1) and str(cost) == "$1.00" and cost.as_dict()["usd"] == "1"
    assert sum([0.0001] * 10_000) != 1.0


def test_usage_from_before_costs_were_kept_is_unknown() -> None:
    old = {"input_tokens": 50, "output_tokens": 5}
    assert str(Cost.of({"usage": old})) == "unknown (55 tokens from before cost tracking)"
    newer = _add_usage(old, call_usage(mini([]), reply("x", 1000, 100)))
    cost = Cost.of(newer)
    assert cost.status == "partial" and cost.nano_usd == 210_000
    assert str(cost) == "≥ $0.00021 (55 tokens from before cost tracking)"


# --- sessions ------------------------------------------------------------------------------------


async def test_known_unknown_and_mixed_sessions(tmp_path: Path) -> None:
    sm = SessionManager(tmp_path / "s")
    agent = Agent(provider=mini([reply("a", 1000, 100)]), session_manager=sm)
    await agent.chat("one", session_id="mixed")
    assert str(Cost.of(sm.session_info("mixed").metadata)) == "$0.00021"

    agent.provider = FakeProvider([reply("b", 10, 1)], name="openai", model="no-such-model-9")
    await agent.chat("two", session_id="mixed")
    usage = sm.session_info("mixed").metadata["usage"]
    assert usage == {
        "input_tokens": 1010, "output_tokens": 101, "cost_nano_usd": 210_000,
        "priced_calls": 1, "costed_tokens": 1111, "unpriced_calls": 1,
    }  # fmt: skip
    cost = Cost.of(usage)
    assert str(cost) == "≥ $0.00021 (1 of 2 calls unpriced)"
    assert cost.as_dict() == {
        "usd": "0.00021", "status": "partial", "priced_calls": 1, "unpriced_calls": 1,
        "untracked_tokens": 0,
    }  # fmt: skip
    assert Cost.of(agent.get_session("mixed").metadata) == cost  # memory shows it at once

    other = Agent(provider=FakeProvider([reply("c", 10, 1)], name="openai", model="nope-2"))
    await other.chat("x", session_id="unknown")
    unknown = Cost.of(other.get_session("unknown").metadata)
    assert str(unknown) == "unknown (1 of 1 call unpriced)" and unknown.usd is None
    assert unknown.as_dict()["usd"] is None
    assert str(cost + unknown) == "≥ $0.00021 (2 of 3 calls unpriced)"


async def test_costs_add_up_across_a_resume(tmp_path: Path) -> None:
    first = Agent(
        provider=mini([reply("a", 1000, 100), reply("b", 2000, 100)]),
        session_manager=SessionManager(tmp_path / "s"),
    )
    await first.chat("one", session_id="r")
    await first.chat("two", session_id="r")
    await first.aclose()
    second = Agent(
        provider=mini([reply("c", 3000, 100)]), session_manager=SessionManager(tmp_path / "s")
    )
    session = second.get_session("r")
    assert Cost.of(session.metadata).priced_calls == 2  # the resumed totals are read back
    await second.chat("three", session_id="r")
    second.save(session)  # nothing new: nothing is added twice
    second.reload("r")
    expected = sum(
        genai_nano("gpt-4o-mini", "openai", input_tokens=n, output_tokens=100)
        for n in (1000, 2000, 3000)
    )
    stored = Cost.of(SessionManager(tmp_path / "s").session_info("r").metadata)
    assert (stored.nano_usd, stored.priced_calls, stored.complete) == (expected, 3, True)


WORKER = """
import asyncio, sys
from scratchy import Agent, SessionManager
from scratchy.providers.base import ModelResponse, Usage
from scratchy.testing import FakeProvider
location, count = sys.argv[1], int(sys.argv[2])
replies = [ModelResponse({"role": "assistant", "content": f"r{i}"}, Usage(1234, 56))
           for i in range(count)]
fake = FakeProvider(replies, name="openai", model="gpt-4o-mini")
agent = Agent(provider=fake, session_manager=SessionManager(location))
async def main():
    for i in range(count):
        await agent.chat(f"q{i}", session_id="shared")
asyncio.run(main())
"""


@pytest.mark.parametrize("store", ["files", "sqlite"])
def test_two_processes_appending_to_one_session_add_their_costs(tmp_path: Path, store: str) -> None:
    location = str(tmp_path / "s") if store == "files" else f"sqlite:///{tmp_path / 's.db'}"
    env = scratchy_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, location, "8"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out.decode()
    info = SessionManager(location).session_info("shared")
    per_call = genai_nano("gpt-4o-mini", "openai", input_tokens=1234, output_tokens=56)
    cost = Cost.of(info.metadata)
    assert (cost.nano_usd, cost.priced_calls, cost.status) == (16 * per_call, 16, "complete")
    assert info.message_count == 1 + 2 * 8 * 2


async def test_importing_scratchy_and_free_turns_never_load_the_price_data(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys, scratchy, scratchy.cli.main\n"
        "from scratchy import Agent\n"
        "from scratchy.testing import FakeProvider\n"
        "agent = Agent(provider=FakeProvider(['hi']), autosave=False)\n"
        "asyncio.run(agent.chat('x'))\n"
        "assert 'genai_prices' not in sys.modules, 'loaded'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=scratchy_env()
    )
    assert done.returncode == 0, done.stderr


# --- FakeProvider scripts and provider token counts --------------------------------------------


def test_a_fake_script_can_be_priced_like_a_vendor_model(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "name": "openai", "model": "gpt-4o-mini",
        "replies": [{"content": "hi", "usage": {"input_tokens": 1000, "output_tokens": 100}}],
    }))  # fmt: skip
    fake = FakeProvider.from_spec(str(script))
    assert (fake.name, fake.model, pricing_of(fake).kind) == ("openai", "gpt-4o-mini", "priced")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"content": "hi", "usage": {"tokens": 3}}]))

    async def run(provider: FakeProvider) -> None:
        async for _ in provider.stream([{"role": "user", "content": "x"}], []):
            pass

    import asyncio

    asyncio.run(run(fake))
    with pytest.raises(UsageError, match="input_tokens, output_tokens"):
        asyncio.run(run(FakeProvider.from_spec(str(bad))))


def test_openai_reports_its_cached_prompt_tokens() -> None:
    from scratchy.providers.openai_compat import _usage

    raw = SimpleNamespace(
        prompt_tokens=2000,
        completion_tokens=30,
        prompt_tokens_details=SimpleNamespace(cached_tokens=1536),
    )
    assert _usage(raw) == Usage(2000, 30, cache_read_tokens=1536)
    assert _usage(SimpleNamespace(prompt_tokens=5, completion_tokens=1)) == Usage(5, 1)


async def test_anthropic_reports_its_cache_reads_and_writes(scripted_server) -> None:
    from scratchy.providers.anthropic import AnthropicProvider

    from .test_providers import CONVERSATION, anthropic_events

    names, events = anthropic_events()
    events[0]["message"]["usage"].update(
        cache_read_input_tokens=300, cache_creation_input_tokens=100
    )
    scripted_server.sse(events, names=names)
    provider = AnthropicProvider("claude-x", api_key="sk-ant", base_url=scripted_server.url)
    final = None
    async for event in provider.stream(CONVERSATION[:2], []):
        final = event
    assert final.usage == Usage(425, 17, cache_read_tokens=300, cache_write_tokens=100)


# --- the command line ----------------------------------------------------------------------------


def _store(tmp_path: Path) -> SessionManager:
    """Four sessions: priced, mixed, free (the scripted model) and unknown."""
    import asyncio

    sm = SessionManager(tmp_path / HISTORY)

    async def fill() -> None:
        a = Agent(
            provider=mini([reply("a", 12_000, 800), reply("b", 30_000, 1_200)]), session_manager=sm
        )
        await a.chat("first question about costs", session_id="priced")
        await a.chat("second", session_id="priced")
        b = Agent(provider=FakeProvider([reply("a", 2000, 100)], name="openai", model="gpt-4o"),
                  session_manager=sm)  # fmt: skip
        await b.chat("hello", session_id="mixed")
        b.provider = FakeProvider([reply("x", 500, 50)], name="openai-compatible", model="qwen")
        await b.chat("again", session_id="mixed")
        await Agent(provider=FakeProvider(["hi"]), session_manager=sm).chat("yo", session_id="free")
        d = Agent(provider=FakeProvider([reply("y", 10, 1)], name="openai", model="no-such-9"),
                  session_manager=sm)  # fmt: skip
        await d.chat("hm", session_id="unknown-one")

    asyncio.run(fill())
    return sm


def test_sessions_cost_in_a_pipe_and_as_json(tmp_path: Path) -> None:
    _store(tmp_path)
    done = _scratchy("sessions", "cost", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    priced = genai_nano("gpt-4o-mini", "openai", input_tokens=42_000, output_tokens=2_000)
    mixed = genai_nano("gpt-4o", "openai", input_tokens=2000, output_tokens=100)
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert lines == [
        ["priced", usd(priced), "complete", "2", "0", "42000", "2000"],
        ["mixed", usd(mixed), "partial", "2", "1", "2500", "150"],
        ["free", "0", "complete", "1", "0", "20", "1"],
        ["unknown-one", "0", "unknown", "1", "1", "10", "1"],
    ]  # fmt: skip
    total = format_usd(priced + mixed, at_least=True)
    assert done.stderr == f"Total for 4 sessions: ≥ {total} (2 of 6 calls unpriced)\n"

    data = json.loads(_scratchy("sessions", "cost", "--json", cwd=tmp_path).stdout)
    assert [s["id"] for s in data["sessions"]] == ["priced", "mixed", "free", "unknown-one"]
    assert data["total"]["cost"] == {
        "usd": usd(priced + mixed),
        "status": "partial", "priced_calls": 4, "unpriced_calls": 2, "untracked_tokens": 0,
    }  # fmt: skip
    assert data["total"]["usage"] == {"input_tokens": 44_530, "output_tokens": 2_152}

    some = _scratchy("sessions", "cost", "free", "priced", cwd=tmp_path)
    assert [line.split("\t")[0] for line in some.stdout.splitlines()] == ["priced", "free"]
    assert some.stderr.startswith("Total for 2 sessions: $")
    assert _scratchy("sessions", "cost", "--since", "1d", cwd=tmp_path).stdout == done.stdout
    future = _scratchy("sessions", "cost", "--since", "2999-01-01", cwd=tmp_path)
    assert future.stdout == "" and future.stderr == (
        "Total for 0 sessions active since 2999-01-01 00:00: $0\n"
    )
    bad = _scratchy("sessions", "cost", "--since", "last week", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr == (
        "Error: --since 'last week': use a date (2026-12-01), a date and time "
        "(2026-12-01 14:30) or an age (7d, 12h, 30m)\n"
    )
    missing = _scratchy("sessions", "cost", "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "No session 'nope'" in missing.stderr


@pytest.mark.parametrize("columns", [40, 80])
def test_sessions_cost_and_list_sort_cost_in_a_terminal(tmp_path: Path, columns: int) -> None:
    _store(tmp_path)
    lines = sessions_in_terminal(tmp_path, columns, "cost")
    assert all(len(line) <= columns for line in lines[:-1])
    header = lines[0].split()
    assert header[0] == "ID" and header[-1] == "Cost"
    assert ("Last" in header) == (columns == 80)
    assert [line.split()[0] for line in lines[1:5]] == ["priced", "mixed", "free", "unknown-one"]
    assert lines[2].endswith("(1 unpriced)") and "≥ $" in lines[2]
    assert lines[4].endswith("unknown (1 unpriced)")
    assert lines[5].startswith("Total for 4 sessions: ≥ $")

    listed = sessions_in_terminal(tmp_path, columns, "list", "--sort", "cost")
    assert "Cost" in listed[0].split()
    assert [line.split()[0] for line in listed[1:]] == ["priced", "mixed", "free", "unknown-one"]
    assert all(len(line) <= columns for line in listed)


def test_list_json_and_show_carry_the_cost(tmp_path: Path) -> None:
    _store(tmp_path)
    rows = json.loads(_scratchy("sessions", "list", "--json", cwd=tmp_path).stdout)
    by_id = {r["id"]: r for r in rows}
    assert by_id["unknown-one"]["cost"]["status"] == "unknown"
    assert by_id["unknown-one"]["usage"] == {"input_tokens": 10, "output_tokens": 1}
    assert by_id["free"]["cost"]["usd"] == "0"
    # the file store's listing cache keeps the totals: a second listing shows them too
    again = json.loads(_scratchy("sessions", "list", "--json", cwd=tmp_path).stdout)
    assert again == rows
    ordered = _scratchy("sessions", "list", "--sort", "cost", cwd=tmp_path).stdout
    assert [line.split("\t")[0] for line in ordered.splitlines()] == [
        "priced", "mixed", "free", "unknown-one",
    ]  # fmt: skip
    shown = _scratchy("sessions", "show", "mixed", cwd=tmp_path).stdout.splitlines()
    assert shown[5:7] == ["Tokens: 2500 in, 150 out", "Cost: ≥ $0.006 (1 of 2 calls unpriced)"]


def test_repl_status_shows_cost_and_price(tmp_path: Path) -> None:
    from .test_repl import Term

    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "name": "openai", "model": "gpt-4o-mini",
        "replies": [{"content": "Hi!", "usage": {"input_tokens": 1000, "output_tokens": 100}}],
    }))  # fmt: skip
    t = Term(tmp_path, model=f"fake:{script}", env={"PYTHONPATH": str(SRC)})
    t.wait_prompt("default")
    t.send("hello")
    status = t.send("/status").splitlines()
    assert "   Cost: $0.00021" in status
    assert "   Model: openai:gpt-4o-mini" in status
    assert "   Price: $0.15 in, $0.60 out per 1M tokens" in status
    t.close()


def test_server_session_header_carries_the_cost(tmp_path: Path) -> None:
    import httpx

    from .server_helpers import KEYS, ServerProc, auth

    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "name": "openai", "model": "gpt-4o-mini",
        "replies": [{"content": "Hi!", "usage": {"input_tokens": 1000, "output_tokens": 100}}],
    }))  # fmt: skip
    server = ServerProc(tmp_path, "--model", f"fake:{script}", workers=1)
    try:
        with httpx.Client(base_url=server.url, headers=auth("alice"), timeout=30) as c:
            assert c.post("/v1/sessions/c1/turns", json={"input": "hi"}).status_code == 200
            header = c.get("/v1/sessions/c1").json()
            listed = c.get("/v1/sessions").json()["items"]
        shown = _session_meta_in_browser(server.url, "c1", KEYS["alice"])
    finally:
        server.close()
    assert header["cost"] == {
        "usd": "0.00021", "status": "complete", "priced_calls": 1, "unpriced_calls": 0,
        "untracked_tokens": 0, "text": "$0.00021", "calls": 1,
    }  # fmt: skip
    assert "1,000 in / 100 out tokens · cost $0.00021 · updated" in shown
    assert [i["cost"]["usd"] for i in listed] == ["0.00021"]


async def test_a_failing_price_lookup_never_fails_a_turn(monkeypatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("price data damaged")

    monkeypatch.setattr(cost_mod, "_decide", broken)
    monkeypatch.setattr(cost_mod, "_cache", {})
    agent = Agent(provider=mini([reply("fine", 10, 1)]), autosave=False)
    assert await agent.chat("x") == "fine"
    assert str(Cost.of(agent.get_session().metadata)) == "unknown (1 of 1 call unpriced)"
    assert "price data damaged" in pricing_of(mini([])).reason


def _session_meta_in_browser(url: str, session_id: str, key: str) -> str:
    """The web app's line under a session's title, read in a real browser."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from .web_helpers import launch

    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context()
            context.add_init_script(f"localStorage.setItem('scratchy.apiKey', {json.dumps(key)})")
            page = context.new_page()
            page.goto(f"{url}/s/{session_id}")
            meta = page.locator("#s-meta")
            sync_api.expect(meta).to_contain_text("cost", timeout=15_000)
            return meta.inner_text()
        finally:
            browser.close()

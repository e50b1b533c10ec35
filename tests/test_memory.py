"""Memory across sessions (issue #16): the store on every backend, and the agent's use of it.

Backend tests run on TOON files, SQLite, Redis and PostgreSQL (real servers, as the store
contract's tests); agent tests use the scripted model (``FakeProvider``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scratchy import Agent, SessionManager
from scratchy.errors import UsageError
from scratchy.history import validate
from scratchy.memory import (
    MEMORY_HEADER,
    MemoryNotFoundError,
    MemoryStore,
    SecretRefusedError,
    looks_secret,
)
from scratchy.testing import FakeProvider
from tests.test_store_contract import BACKENDS, Backend, open_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from open_backend(request.param, request, tmp_path)


# -- the store, on every backend ----------------------------------------------------------------


def test_remember_recall_update_forget_list(backend: Backend) -> None:
    mem = MemoryStore(backend.make())
    assert mem.list() == [] and mem.recall("anything") == []
    tabs = mem.remember("I prefer tabs over spaces in Python", tags=["style", "Python"])
    name = mem.remember("My name is Ada", source={"session": "intro", "message": 1})
    mem.remember("The deploy server is called hermes")
    assert tabs.id.startswith("m_") and tabs.tags == ["style", "python"]
    assert tabs.created_at == tabs.updated_at
    assert [m.text for m in mem.recall("what is my name?")] == ["My name is Ada"]
    assert mem.recall("which editor for pyth")[0].id == tabs.id  # last word as a prefix
    assert mem.recall("style")[0].id == tabs.id  # tags are searched too
    assert mem.get(name.id).source == {"session": "intro", "message": 1}
    assert {m.id for m in mem.list(tag="style")} == {tabs.id}

    updated = mem.update(name.id, "My name is Ada Lovelace")
    assert updated.text == "My name is Ada Lovelace" and updated.updated_at > name.updated_at
    assert updated.history[0]["text"] == "My name is Ada"
    assert updated.history[0]["source"] == {"session": "intro", "message": 1}
    assert mem.recall("lovelace")[0].id == name.id
    assert mem.list()[0].id == name.id  # most recently changed first
    assert mem.forget(tabs.id) is True and mem.forget(tabs.id) is False
    assert mem.recall("tabs") == [] and mem.count() == 2
    with pytest.raises(MemoryNotFoundError, match="no memory 'm_nope'"):
        mem.update("m_nope", "x")
    exported = mem.export()
    assert [e["text"] for e in exported] == [
        "My name is Ada Lovelace",
        "The deploy server is called hermes",
    ]
    assert exported[0]["history"][0]["text"] == "My name is Ada"


def test_a_rare_word_is_found_among_thousands_of_common_ones(backend: Backend) -> None:
    """Words in most memories are left out of the ranking when rarer ones are asked for, so
    an old memory with a rare word is not lost behind the most recent common matches."""
    from scratchy.stores.memory_base import Memory, backend_for

    store = backend.make()
    now = "2026-01-01T00:00:00.000000+00:00"
    entries = [Memory("m_zebra00000", "The user likes zebras", [], now, now)]
    entries += [
        Memory(f"m_{i:010d}", f"The user likes topic number {i}", [], now, now) for i in range(6000)
    ]
    backend_for(store).insert_many(entries)
    found = MemoryStore(store).recall("which animals does the user like? zebras likes", limit=3)
    assert found[0].id == "m_zebra00000"
    assert len(MemoryStore(store).recall("likes", limit=3)) == 3


def test_restatements_are_not_stored_twice(backend: Backend) -> None:
    mem = MemoryStore(backend.make())
    first = mem.remember("I use Vim for everything")
    again = mem.remember("  i use VIM for everything! ", tags=["editor"])
    assert again.id == first.id and again.tags == ["editor"] and mem.count() == 1
    other = mem.remember("I use Vim for everything except Java")
    assert other.id != first.id and mem.count() == 2


def test_other_instances_see_changes(backend: Backend) -> None:
    """A second store object plays another process (Redis: its own FTS mirror is updated)."""
    one, two = MemoryStore(backend.make()), MemoryStore(backend.make())
    a = one.remember("The staging database is postgres 16")
    assert [m.id for m in two.recall("postgres")] == [a.id]
    one.update(a.id, "The staging database is mariadb 11")
    assert two.recall("postgres") == [] and two.recall("mariadb")[0].id == a.id
    one.forget(a.id)
    assert two.recall("mariadb") == [] and two.list() == []


def test_owners_are_isolated(backend: Backend) -> None:
    store = backend.make()
    root, alice, bob = (
        MemoryStore(store),
        MemoryStore(store.scoped("alice")),
        MemoryStore(store.scoped("bob")),
    )
    a = alice.remember("Alice works on the billing service")
    bob.remember("Bob works on the search service")
    assert [m.text for m in alice.recall("works service")] == [a.text]
    assert [m.text for m in bob.list()] == ["Bob works on the search service"]
    assert root.list() == [] and root.recall("service") == []
    assert bob.get(a.id) is None and bob.forget(a.id) is False
    with pytest.raises(MemoryNotFoundError):
        bob.update(a.id, "stolen")
    assert alice.get(a.id).text == a.text
    # the same text under two owners is two entries
    assert bob.remember(a.text).id != a.id


def test_delete_session_with_memories(backend: Backend) -> None:
    sm = SessionManager(store=backend.make())
    sm.save_session("chat1", [{"role": "user", "content": "I live in Lyon"}])
    sm.save_session("chat2", [{"role": "user", "content": "I like jazz"}])
    mem = MemoryStore(sm)
    lyon = mem.remember("The user lives in Lyon", source={"session": "chat1", "message": 0})
    jazz = mem.remember("The user likes jazz", source={"session": "chat2", "message": 0})
    hand = mem.remember("The user has a cat")
    assert sm.delete_session("chat2") is True and mem.count() == 3  # kept by default
    assert sm.delete_session("chat1", with_memories=True) is True
    assert {m.id for m in mem.list()} == {jazz.id, hand.id} and mem.get(lyon.id) is None
    assert mem.forget_session("chat2") == [jazz.id]
    assert [m.id for m in mem.list()] == [hand.id]


# -- policy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "my key is sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "OPENAI_API_KEY=abc123secretvalue",
        "the db password: hunter22",
        "use Authorization: Bearer abcdefghijklmnop1234",
        "connect with postgresql://ada:s3cret@db.example.com/app",
        "deploy key -----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAA",
        "run it with --token abcdef123456",
    ],
)
def test_secrets_are_refused(text: str) -> None:
    mem = MemoryStore()
    assert looks_secret(text)
    with pytest.raises(SecretRefusedError, match=r"^Not remembered: it looks like a secret"):
        mem.remember(text)
    ok = mem.remember("The user keeps API keys in a password manager")
    with pytest.raises(SecretRefusedError):
        mem.update(ok.id, text)
    assert mem.get(ok.id).text == "The user keeps API keys in a password manager"
    assert [m.id for m in mem.list()] == [ok.id]


def test_bad_input_is_one_clear_line() -> None:
    mem = MemoryStore()
    for call, message in [
        (lambda: mem.remember("   "), "a memory needs some text"),
        (lambda: mem.remember("x" * 1001), "at most 1000 characters"),
        (lambda: mem.remember("ok", tags=["two words"]), "invalid tag"),
        (lambda: mem.remember(42), "a memory is text, not int"),  # type: ignore[arg-type]
        (lambda: mem.recall("x", limit=0), "limit must be between 1 and 1000"),
    ]:
        with pytest.raises(UsageError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert mem.list() == []  # nothing was created by the refused calls
    assert not Path("scratchy/session_history/.memory").exists()


def test_id_prefixes_resolve_when_unique() -> None:
    mem = MemoryStore()
    a = mem.remember("first fact")
    assert mem.resolve(a.id[:6]).id == a.id
    with pytest.raises(MemoryNotFoundError, match="no memory 'm_zz'"):
        mem.resolve("m_zz")


def test_async_forms() -> None:
    mem = MemoryStore()

    async def go() -> None:
        m = await mem.aremember("The user writes Rust at work", tags="rust, work")
        assert m.tags == ["rust", "work"]
        assert [x.id for x in await mem.arecall("rust")] == [m.id]
        assert (await mem.aupdate(m.id, "The user writes Go at work")).history
        assert [x.text for x in await mem.alist()] == ["The user writes Go at work"]
        assert await mem.aforget(m.id)

    asyncio.run(go())
    assert mem.list() == []


# -- the agent ------------------------------------------------------------------------------------


def _system_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "system"]


def test_tools_remember_with_provenance_and_recall() -> None:
    fake = FakeProvider(
        [
            FakeProvider.tool_call("remember", text="The user's name is Ada", tags=["profile"]),
            "Nice to meet you, Ada.",
            FakeProvider.tool_call("recall", query="name"),
            "Your name is Ada.",
            FakeProvider.tool_call("remember", text="api_key=abcd1234efgh5678"),
            "I cannot keep that.",
        ]
    )
    agent = Agent(provider=fake, memory=True)
    assert {"remember", "recall"} <= set(agent.tools.names())
    assert asyncio.run(agent.chat("Hi, I am Ada", "intro")) == "Nice to meet you, Ada."
    [m] = agent.memory.list()
    assert m.text == "The user's name is Ada" and m.tags == ["profile"]
    assert m.source == {"session": "intro", "message": 1}  # the user's message of that turn
    stored = agent.session_manager.load_session("intro")
    assert stored[m.source["message"]] == {"role": "user", "content": "Hi, I am Ada"}
    asyncio.run(agent.chat("What's my name?", "intro"))
    tool_result = agent.sessions["intro"].messages[-2]
    assert (
        tool_result["role"] == "tool"
        and f"[{m.id}] The user's name is Ada" in tool_result["content"]
    )
    asyncio.run(agent.chat("remember my key api_key=abcd1234efgh5678", "intro"))
    refused = agent.sessions["intro"].messages[-2]["content"]
    assert refused.startswith("Error: Not remembered: it looks like a secret")
    assert len(agent.memory.list()) == 1


def test_memories_go_into_a_new_sessions_context_within_the_budget() -> None:
    seed = MemoryStore()
    name = seed.remember("The user's name is Ada")
    editor = seed.remember("The user edits code with Helix, the editor")
    long = seed.remember("The user's editor config: " + "helix theme settings " * 30)
    seed.remember("The user's cat is called Pixel")
    fake = FakeProvider(lambda messages, tools: "ok")
    agent = Agent(provider=fake, memory=True)
    agent.memory.budget = 80  # tokens: the long memory does not fit
    asyncio.run(agent.chat("Hello! Which editor do I use, and what is my name?", "fresh"))
    sent = fake.calls[0].messages
    assert sent[0]["role"] == "system" and sent[1]["role"] == "system"
    block = sent[1]["content"]
    assert block.startswith(MEMORY_HEADER)
    assert f"[{name.id}]" in block and f"[{editor.id}]" in block
    assert long.id not in block and "Pixel" not in block
    assert len(block) // 4 <= 80
    # the stored transcript holds only the conversation; the ids shown are in the metadata
    info = agent.session_manager.store.load("fresh")
    assert _system_texts(info.messages) == [agent.system_prompt]
    assert not validate(info.messages)
    assert set(info.info.metadata["memories"]) == {name.id, editor.id}
    # the second turn still shows them, and a resumed session (new process) shows the same
    asyncio.run(agent.chat("thanks", "fresh"))
    assert fake.calls[1].messages[1]["content"] == block
    fake2 = FakeProvider(["ok"])
    again = Agent(provider=fake2, memory=True)
    asyncio.run(again.chat("and my cat?", "fresh"))
    assert fake2.calls[0].messages[1]["content"] == block
    # a session that existed before memory was switched on gets none
    SessionManager().save_session("old", [{"role": "user", "content": "name editor"}])
    fake3 = FakeProvider(["ok"])
    asyncio.run(Agent(provider=fake3, memory=True).chat("my name?", "old"))
    assert not any(MEMORY_HEADER in t for t in _system_texts(fake3.calls[0].messages))


def test_nothing_relevant_adds_nothing_and_forget_leaves_the_context() -> None:
    seed = MemoryStore()
    m = seed.remember("The user's favourite colour is teal")
    fake = FakeProvider(lambda messages, tools: "ok")
    agent = Agent(provider=fake, memory=True)
    asyncio.run(agent.chat("What is 2 + 2?", "math"))
    assert _system_texts(fake.calls[0].messages) == [agent.system_prompt]
    assert "memories" not in agent.session_manager.store.info("math").metadata
    asyncio.run(agent.chat("favourite colour?", "colours"))
    assert m.id in fake.calls[1].messages[1]["content"]
    agent.memory.forget(m.id)
    asyncio.run(agent.chat("and now?", "colours"))
    assert _system_texts(fake.calls[2].messages) == [agent.system_prompt]


def test_memory_off_by_default_and_bad_values() -> None:
    fake = FakeProvider(["ok"])
    agent = Agent(provider=fake)
    assert agent.memory is None and "remember" not in agent.tools.names()
    with pytest.raises(UsageError, match="memory must be True, False or 'auto'"):
        Agent(provider=fake, memory="yes")


def _extractor(answers: list[str]) -> FakeProvider:
    """A scripted model: 'ok' to the conversation, the next of ``answers`` to each extraction
    (``answers`` may be added to as the test goes)."""

    def reply(messages: list[dict[str, Any]], tools: list[Any]) -> str:
        if messages[0]["content"].startswith("You maintain a small, precise memory"):
            return answers.pop(0)
        return "ok"

    return FakeProvider(reply)


def test_extraction_stores_dedups_and_supersedes_keeping_history() -> None:
    answers: list[str] = []
    fake = _extractor(answers)
    agent = Agent(provider=fake, memory="auto")

    answers.append(
        json.dumps(
            {
                "facts": [
                    {"text": "The user's name is Ada.", "replaces": None},
                    {"text": "The user uses Vim as their editor.", "replaces": None},
                    {"text": "The user is a senior engineer at Google.", "replaces": None},
                ]
            }
        )
    )
    asyncio.run(agent.chat("Hi, I'm Ada and I use Vim as my editor", "s1"))
    texts = sorted(m.text for m in agent.memory.list())
    # the guess about a job the user never mentioned is not stored
    assert texts == ["The user uses Vim as their editor.", "The user's name is Ada."]
    vim = next(m for m in agent.memory.list() if "Vim" in m.text)
    assert vim.source == {"session": "s1", "message": 1}
    prompt = fake.calls[1].messages
    assert "Hi, I'm Ada and I use Vim" in prompt[1]["content"] and "ok" not in prompt[1]["content"]

    # a restatement: not stored twice; a contradiction: supersedes, history kept
    def second(messages: list[dict[str, Any]], tools: list[Any]) -> None:
        assert f"[{vim.id}] The user uses Vim as their editor." in messages[1]["content"]

    answers.append(
        json.dumps(
            {
                "facts": [
                    {"text": "the user's NAME is Ada", "replaces": None},
                    {"text": "The user uses Helix as their editor.", "replaces": vim.id},
                ]
            }
        )
    )
    asyncio.run(agent.chat("I'm Ada, remember? I switched my editor from Vim to Helix", "s2"))
    second(fake.calls[3].messages, [])
    entries = agent.memory.list()
    assert len(entries) == 2
    now = agent.memory.get(vim.id)
    assert now.text == "The user uses Helix as their editor."
    assert now.history == [
        {
            "text": "The user uses Vim as their editor.",
            "until": now.updated_at,
            "source": vim.source,
        }
    ]
    assert now.source == {"session": "s2", "message": 1}
    # transcripts hold only the conversation, and the extraction's tokens are counted
    stored = agent.session_manager.load_session("s2")
    assert [m["role"] for m in stored] == ["system", "user", "assistant"]


GH_TOKEN = "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789"


def test_extraction_refuses_secrets_and_ignores_bad_answers() -> None:
    fake = _extractor(
        [
            json.dumps({"facts": [{"text": f"The user's token is {GH_TOKEN}"}]}),
            "Sure! Here are the facts: the user likes cats.",
            '{"facts": []}',
        ]
    )
    agent = Agent(provider=fake, memory="auto")
    asyncio.run(agent.chat(f"my token is {GH_TOKEN}", "a"))
    asyncio.run(agent.chat("I like cats", "a"))
    asyncio.run(agent.chat("thanks", "a"))
    assert agent.memory.list() == []
    assert len(fake.calls) == 6  # one extraction after each turn


def test_a_failed_extraction_leaves_the_turn_alone(caplog: pytest.LogCaptureFixture) -> None:
    from scratchy.errors import ProviderError

    def reply(messages: list[dict[str, Any]], tools: list[Any]) -> Any:
        if messages[0]["content"].startswith("You maintain a small, precise memory"):
            return ProviderError("the model is overloaded")
        return "ok"

    agent = Agent(provider=FakeProvider(reply), memory="auto")
    assert asyncio.run(agent.chat("I like cats", "a")) == "ok"
    assert agent.memory.list() == []
    assert "extraction after the turn failed" in caplog.text


def test_extraction_tokens_are_stored_with_the_session() -> None:
    fake = _extractor(['{"facts": [{"text": "The user likes cats"}]}'])
    agent = Agent(provider=fake, memory="auto")
    asyncio.run(agent.chat("I like cats", "a"))
    stored = agent.session_manager.session_info("a").metadata["usage"]
    assert stored == agent.sessions["a"].metadata["usage"]
    assert stored["input_tokens"] == sum(
        len(" ".join(str(m.get("content") or "") for m in c.messages).split()) for c in fake.calls
    )


def test_memory_on_without_auto_makes_no_extra_model_call() -> None:
    fake = FakeProvider(["ok", "ok"])
    agent = Agent(provider=fake, memory=True)
    asyncio.run(agent.chat("I am Ada", "a"))
    asyncio.run(agent.chat("I like cats", "a"))
    fake.assert_complete()
    assert len(fake.calls) == 2


def test_memories_are_per_owner_through_the_agent(tmp_path: Path) -> None:
    base = SessionManager(tmp_path / "s").store
    for owner, fact in (("alice", "Alice's team is called Blue"), ("bob", "Bob's team is Red")):
        MemoryStore(base.scoped(owner)).remember(fact)
    fake = FakeProvider(lambda messages, tools: "ok")
    alice = Agent(
        provider=fake, session_manager=SessionManager(store=base.scoped("alice")), memory=True
    )
    asyncio.run(alice.chat("what is my team called?", "t"))
    block = fake.calls[0].messages[1]["content"]
    assert "Blue" in block and "Red" not in block


def test_memory_survives_a_new_process(tmp_path: Path) -> None:
    code = (
        "import sys; from scratchy import SessionManager; "
        "from scratchy.memory import MemoryStore; "
        "print(MemoryStore(SessionManager(sys.argv[1])).remember('The user was here').id)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        check=True,
    )
    mid = out.stdout.strip()
    assert MemoryStore(SessionManager(tmp_path / "s")).recall("here")[0].id == mid
    assert (tmp_path / "s" / ".memory" / "memories.sqlite").exists()

"""End to end with real parts: the embedded model behind Agent() and the REPL, and an MCP
server started as a subprocess and called by the agent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scratchy import Agent, SessionManager
from scratchy.history import validate
from scratchy.testing import FakeProvider

from .test_docs_seed import blocks, run_block
from .test_repl import Term

ECHO_SERVER = Path(__file__).parent / "mcp_servers" / "echo_server.py"


@pytest.mark.real_model
async def test_docs_first_snippet_on_the_embedded_model(tmp_path: Path) -> None:
    """``Agent()`` with no model and no key runs SmolLM2 in process and answers."""
    ns: dict = {}
    await run_block(dict(blocks("python"))["Creating Sessions"], ns)
    agent: Agent = ns["agent"]
    assert agent.provider.name == "local"
    for sid in ("default", "my_project"):
        messages = SessionManager().load_session(sid)
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[-1]["content"].strip()
    await run_block(dict(blocks("python"))["Session Persistence"], ns)
    await agent.aclose()


@pytest.mark.real_model
def test_repl_on_the_embedded_model_then_resume(tmp_path: Path) -> None:
    t = Term(tmp_path, "--session", "e2e", model="")
    t.wait_prompt("e2e")
    answer = t.send("What is the capital of France? Answer in one word.", "e2e")
    assert answer.startswith("[e2e] 🤖 Assistant: ")
    assert answer.removeprefix("[e2e] 🤖 Assistant: ").strip()
    t.close()
    t = Term(tmp_path, "--session", "e2e", model="")
    t.wait_prompt("e2e")
    status = t.send("/status")
    assert "Messages: 3" in status and "Saved: Yes" in status and "Model: local:" in status
    t.close()


async def test_agent_calls_a_real_mcp_stdio_server(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {"mcpServers": {"demo": {"command": sys.executable, "args": [str(ECHO_SERVER)]}}}
        )
    )
    fake = FakeProvider([FakeProvider.tool_call("demo__add", a=20, b=22), "It is 42."])
    async with Agent(provider=fake, tool_approval="allow") as agent:
        agent.add_mcp_server(str(config))
        assert await agent.chat("What is 20 + 22?", session_id="mcp") == "It is 42."
    names = [t["function"]["name"] for t in fake.calls[0].tools]
    assert "demo__add" in names and "demo__echo" in names
    history = SessionManager().load_session("mcp")
    assert history[-2] == {
        "role": "tool",
        "tool_call_id": history[-3]["tool_calls"][0]["id"],
        "content": "42",
        "name": "demo__add",
    }
    assert validate(history) == []

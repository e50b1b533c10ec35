"""Automatic extraction (``Agent(memory="auto")``): after a turn, durable facts the user stated.

The model gets only the turn's user message and the stored memories that look related (with
their ids), and a strict prompt asking for JSON. What it answers is checked before anything is
stored: at most :data:`MAX_FACTS` facts of at most 300 characters; each must be grounded in the
user's own words (at least half of its meaningful words occur in the message: a guess about
the user does not pass); secrets are refused; a fact that restates a stored memory is not stored
again; a fact naming a stored memory in ``replaces`` supersedes it (the old text goes to the
entry's history). An answer that is not the JSON asked for stores nothing.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    from .agent import Session
    from .memory import AgentMemory, Memory

logger = logging.getLogger("scratchy.memory")

MAX_FACTS = 5
EXTRACT_PROMPT = """You maintain a small, precise memory of durable facts about the user.
Read the user's message. Reply with JSON only, in this shape:
{"facts": [{"text": "...", "replaces": null}]}

Rules:
- Only facts the user stated explicitly about themselves, their preferences, or their work and
  projects, that will still be true in later conversations.
- Never a guess, an inference, or anything the assistant said.
- Never a secret: no passwords, API keys, tokens.
- Not questions, greetings, thanks, or one-off requests.
- Each fact is one short sentence in the third person ("The user's name is Ada.").
- A fact already in the stored memories: leave it out.
- A fact that contradicts a stored memory: give that memory's id in "replaces".
- Nothing durable: {"facts": []}"""


def build_prompt(user_text: str, related: list[Memory]) -> list[dict[str, Any]]:
    """The extraction request: the strict instructions, then the message and related
    memories."""
    from . import messages as msgs

    stored = "\n".join(f"- [{m.id}] {m.text}" for m in related) or "(none)"
    body = f"Stored memories:\n{stored}\n\nThe user's message:\n{user_text}"
    return [msgs.system(EXTRACT_PROMPT), msgs.user(body)]


def parse_facts(text: str) -> list[dict[str, Any]]:
    """The facts of a model's answer (``[]`` when it is not the JSON asked for)."""
    match = re.search(r"\{.*\}|\[.*\]", text or "", re.S)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return []
    items = data.get("facts") if isinstance(data, dict) else data
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            item = {"text": item}
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            replaces = item.get("replaces")
            if not isinstance(replaces, str):
                replaces = None
            out.append({"text": item["text"].strip(), "replaces": replaces})
    return out[:MAX_FACTS]


def grounded(fact: str, user_text: str) -> bool:
    """True when at least half of the fact's meaningful words occur in what the user said
    (a word counts when its first 4 letters begin a word of the message)."""
    from .memory import content_words

    words = content_words(fact)
    if not words:
        return False
    said = content_words(user_text)
    stems = {w[:4] for w in said}
    hits = sum(1 for w in words if w in said or w[:4] in stems)
    return hits * 2 >= len(words)


async def extract(memory: AgentMemory, session: Session) -> list[tuple[str, Memory]]:
    """Ask the model for the turn's durable facts and apply them (see the module docstring)."""
    from .messages import text_of
    from .providers.base import complete

    messages = session.messages
    index = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None
    )
    if index is None:
        return []
    user_text = text_of(messages[index])
    if not user_text.strip():
        return []
    related = await memory.arecall(user_text, limit=8)
    agent = memory.agent
    response = await complete(agent.provider, build_prompt(user_text, related))
    agent._account(session, response)
    source = {"session": session.session_id, "message": index}
    known = {m.id for m in related}
    changes: list[tuple[str, Memory]] = []
    answer = text_of(response.message)
    logger.debug("memory: extraction answer %r", answer[:500])
    for fact in parse_facts(answer):
        text = fact["text"]
        if not text or len(text) > 300 or not grounded(text, user_text):
            logger.info("memory: fact not stated by the user, not stored: %r", text[:80])
            continue
        try:
            if fact["replaces"] in known:
                old = next(m for m in related if m.id == fact["replaces"])
                if _same(old.text, text):
                    changes.append(("kept", old))
                    continue
                new = await memory.aupdate(old.id, text, source=source)
                changes.append(("superseded", new))
                continue
            before = await memory.arecall(text, limit=10)
            entry = await memory.aremember(text, source=source)
            kept = any(m.id == entry.id for m in before)
            changes.append(("kept" if kept else "added", entry))
        except UsageError as exc:  # a secret, or a bad text: never stored
            logger.info("memory: fact refused (%s)", exc)
    return changes


def _same(a: str, b: str) -> bool:
    from .memory import same_fact

    return same_fact(a, b)

"""Checks and repairs of a message history, so that no slice or cancelled turn breaks a provider.

Providers reject a history where a tool result has no matching call before it, or where an
assistant tool call has no result. :func:`validate` lists such problems; :func:`repair` returns a
copy fixed with the smallest change (orphan results dropped, a "cancelled" result added after an
unanswered call, a misplaced system message moved first). :func:`trim` keeps the recent end of a
long history without ever separating a tool call from its results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .messages import Message, text_of, tool_result

CANCELLED = "Error: this tool call was cancelled or its result was lost"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a history."""

    index: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"message {self.index}: {self.kind}: {self.detail}"


def validate(messages: list[Message], start: int = 0) -> list[Problem]:
    """List the problems of ``messages`` (empty when a provider will accept it).

    With ``start``, only ``messages[start:]`` is checked, as a continuation of a history
    already known to be valid up to there (used to keep each turn's check short).
    """
    problems: list[Problem] = []
    open_calls: dict[str, int] = {}
    seen_ids: set[str] = set()
    for i in range(start, len(messages)):
        msg = messages[i]
        role = msg.get("role")
        if role == "system" and i != 0:
            problems.append(Problem(i, "system-not-first", "a system message after the start"))
        if role != "tool" and open_calls:
            for call_id, at in open_calls.items():
                problems.append(
                    Problem(at, "unanswered-call", f"tool call {call_id} has no result")
                )
            open_calls.clear()
        if role == "assistant":
            for call in msg.get("tool_calls") or []:
                call_id = call.get("id", "")
                if call_id in seen_ids:
                    problems.append(Problem(i, "duplicate-call-id", f"tool call id {call_id}"))
                seen_ids.add(call_id)
                open_calls[call_id] = i
        elif role == "tool":
            call_id = msg.get("tool_call_id", "")
            if call_id not in open_calls:
                problems.append(Problem(i, "orphan-result", f"no tool call {call_id} before it"))
            else:
                del open_calls[call_id]
    for call_id, at in open_calls.items():
        problems.append(Problem(at, "unanswered-call", f"tool call {call_id} has no result"))
    return problems


def repair(messages: list[Message]) -> list[Message]:
    """A copy of ``messages`` that :func:`validate` accepts (the list itself when it already is)."""
    if not validate(messages):
        return messages
    out: list[Message] = []
    systems = [m for m in messages if m.get("role") == "system"]
    if systems and messages[0].get("role") != "system":
        out.append(systems[0])
    open_calls: dict[str, str] = {}
    seen_ids: set[str] = set()

    def close_open() -> None:
        for call_id, name in open_calls.items():
            out.append(tool_result(call_id, CANCELLED, name or None))
        open_calls.clear()

    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role == "system" and (i != 0 or out):
            continue
        if role != "tool":
            close_open()
        if role == "assistant" and msg.get("tool_calls"):
            calls = [c for c in msg["tool_calls"] if c.get("id") not in seen_ids]
            for c in calls:
                seen_ids.add(c["id"])
                open_calls[c["id"]] = c.get("function", {}).get("name", "")
            fixed = dict(msg)
            if calls:
                fixed["tool_calls"] = calls
            else:
                fixed.pop("tool_calls")
                if fixed.get("content") is None:
                    fixed["content"] = ""
            out.append(fixed)  # type: ignore[arg-type]
        elif role == "tool":
            if msg.get("tool_call_id") in open_calls:
                del open_calls[msg["tool_call_id"]]
                out.append(msg)
        else:
            out.append(msg)
    close_open()
    return out


def trim(messages: list[Message], keep_last: int = 50) -> list[Message]:
    """Keep the system message and about the last ``keep_last`` messages, never cutting a tool
    call from its results (the cut moves back to the assistant message that made the calls)."""
    if keep_last < 0:
        raise ValueError("keep_last must be >= 0")
    head = messages[:1] if messages and messages[0].get("role") == "system" else []
    body = messages[len(head) :]
    if len(body) <= keep_last:
        return list(messages)
    start = len(body) - keep_last
    while 0 < start < len(body) and body[start].get("role") == "tool":
        start -= 1
    return head + repair(body[start:])


SUMMARY_PREFIX = "Summary of the earlier conversation:\n"


def estimate_tokens(messages: list[Message]) -> int:
    """A rough, offline token count (about 4 characters a token, plus a little per message)."""
    total = 0
    for msg in messages:
        total += 4 + len(text_of(msg)) // 4
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            total += 8 + (len(fn.get("name", "")) + len(fn.get("arguments", ""))) // 4
    return total


def compaction_split(messages: list[Message], keep_last: int) -> tuple[int, int]:
    """``(start, end)`` of the span to summarise: after the system message, up to a turn
    boundary (a user message) that leaves at least ``keep_last`` messages as they are."""
    start = 1 if messages and messages[0].get("role") == "system" else 0
    end = max(start, len(messages) - keep_last)
    while start < end < len(messages) and messages[end].get("role") != "user":
        end -= 1
    return start, end


def compact(messages: list[Message], summary: str, start: int, end: int) -> list[Message]:
    """Replace ``messages[start:end]`` by one summary message that keeps the originals under
    ``"compacted"`` (providers never see that key; :func:`uncompact` brings them back)."""
    if end <= start:
        return list(messages)
    note: dict[str, Any] = {
        "role": "user",
        "content": SUMMARY_PREFIX + summary.strip(),
        "compacted": messages[start:end],
    }
    return [*messages[:start], note, *messages[end:]]  # type: ignore[list-item]


def uncompact(messages: list[Message]) -> list[Message]:
    """The history with every summary replaced by the messages it stands for (recursively)."""
    out: list[Message] = []
    for msg in messages:
        inner = msg.get("compacted")
        if isinstance(inner, list):
            out.extend(uncompact(inner))
        else:
            out.append(msg)
    return out


def transcript(messages: list[Message]) -> str:
    """Plain text of a span of messages, for the model to summarise."""
    lines = []
    for msg in messages:
        text = text_of(msg)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            text += f"\n[called {fn.get('name')}({fn.get('arguments', '')})]"
        lines.append(f"{msg.get('role')}: {text}")
    return "\n".join(lines)

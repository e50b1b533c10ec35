"""Text rendering of sessions: transcripts, exports and short previews."""

from __future__ import annotations

import json
from typing import Any

from ..export import export_text, to_markdown
from ..messages import Message, text_of

__all__ = ["call_summary", "export_text", "format_transcript", "short", "to_markdown"]


def short(value: Any, limit: int = 80) -> str:
    """One line, at most ``limit`` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_summary(name: str, arguments: str | dict[str, Any]) -> str:
    """``name(key=value, ...)`` with short values, for one-line tool call displays."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return f"{name}({short(arguments, 60)})"
    if not isinstance(arguments, dict):
        return f"{name}({short(arguments, 60)})"
    parts = [f"{k}={short(json.dumps(v, ensure_ascii=False), 40)}" for k, v in arguments.items()]
    return f"{name}({short(', '.join(parts), 100)})"


def format_transcript(messages: list[Message]) -> str:
    """A plain-text transcript, tool calls on one line each."""
    lines: list[str] = []
    for msg in messages:
        role = msg.get("role")
        if role == "tool":
            lines.append(f"  ↳ {msg.get('name') or 'tool'}: {short(text_of(msg), 100)}")
            continue
        text = text_of(msg)
        if text:
            lines.append(f"{role}: {text}")
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {})
            lines.append(f"  ⚙ {call_summary(fn.get('name', '?'), fn.get('arguments', ''))}")
    return "\n".join(lines)

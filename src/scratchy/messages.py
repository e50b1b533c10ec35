"""The message shape of a session: plain JSON-ready dicts in the OpenAI chat format.

``session.messages`` stays a ``list[dict]`` so that users can ``json.dump`` it and hand a
``json.load``-ed list back to ``save_session``. These ``TypedDict``s describe that shape and
:func:`validate_messages` checks it at the boundaries (save, import) with an error that names the
bad message index and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NotRequired, TypedDict

from .errors import InvalidMessageError

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset({"system", "user", "assistant", "tool"})


class FunctionCall(TypedDict):
    """The function part of a tool call; ``arguments`` is a JSON-encoded string."""

    name: str
    arguments: str


class ToolCall(TypedDict):
    """One tool call requested by the assistant."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class ContentPart(TypedDict, total=False):
    """One part of a multi-part content list (``{"type": "text", "text": ...}`` and others)."""

    type: str
    text: str


class Message(TypedDict):
    """A chat message. Extra keys are kept as they are (JSON values only)."""

    role: Role
    content: str | list[ContentPart] | None
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]
    name: NotRequired[str]


def system(text: str) -> Message:
    """Build a system message."""
    return {"role": "system", "content": text}


def user(text: str) -> Message:
    """Build a user message."""
    return {"role": "user", "content": text}


def assistant(text: str | None, tool_calls: list[ToolCall] | None = None) -> Message:
    """Build an assistant message, optionally with tool calls."""
    msg: Message = {"role": "assistant", "content": text}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def tool_result(tool_call_id: str, content: str, name: str | None = None) -> Message:
    """Build the tool message answering the call ``tool_call_id``."""
    msg: Message = {"role": "tool", "tool_call_id": tool_call_id, "content": content}
    if name:
        msg["name"] = name
    return msg


def text_of(message: Mapping[str, Any]) -> str:
    """The plain text of a message's content (text parts joined; '' for None)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))


def _bad(index: int, field: str, problem: str) -> InvalidMessageError:
    return InvalidMessageError(
        f"message {index}: field '{field}' {problem}", index=index, field=field
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_in(value: Any) -> str | None:
    """The path (``""``, ``[2]``, ``.key``) of the first string in ``value`` holding a lone
    surrogate, which cannot be written as UTF-8, or None."""
    if isinstance(value, str):
        return None if value.isascii() or not _SURROGATE.search(value) else ""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _surrogate_in(key) is not None:
                return f".{_printable(key)}"
            found = _surrogate_in(item)
            if found is not None:
                return f".{key}{found}"
    elif isinstance(value, (list, tuple)):
        for j, item in enumerate(value):
            found = _surrogate_in(item)
            if found is not None:
                return f"[{j}]{found}"
    return None


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_text(msg: Mapping[str, Any], index: int) -> None:
    for key, value in msg.items():
        where = "" if _surrogate_in(key) is not None else _surrogate_in(value)
        key = _printable(key)
        if where is not None:
            raise _bad(
                index,
                f"{key}{where}",
                "holds a lone surrogate (a character that is not valid Unicode, often a byte "
                "that was not UTF-8); decode the text with errors='replace' first",
            )


def _check_json(value: Any, index: int, field: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _bad(index, field, f"is not JSON-serializable ({exc})") from None


def validate_message(msg: Any, index: int = 0) -> None:
    """Check one message; raise :class:`InvalidMessageError` naming ``index`` and the field."""
    if not isinstance(msg, Mapping):
        raise InvalidMessageError(
            f"message {index}: expected a dict with 'role' and 'content', got {type(msg).__name__}",
            index=index,
        )
    for key in msg:
        if not isinstance(key, str):
            raise _bad(index, repr(key), "is not a string key")
    role = msg.get("role")
    if role not in ROLES:
        raise _bad(index, "role", f"must be one of system/user/assistant/tool, got {role!r}")
    if "content" not in msg and not (role == "assistant" and msg.get("tool_calls")):
        raise _bad(index, "content", "is missing (use null for an assistant tool-call message)")
    content = msg.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise _bad(index, f"content[{j}]", "must be a dict with a string 'type'")
    elif content is not None and not isinstance(content, str):
        raise _bad(
            index,
            "content",
            f"must be a string, a list of parts or null, got {type(content).__name__}",
        )
    calls = msg.get("tool_calls")
    if calls is not None:
        if role != "assistant":
            raise _bad(index, "tool_calls", "is only allowed on assistant messages")
        if not isinstance(calls, list):
            raise _bad(index, "tool_calls", "must be a list")
        for j, call in enumerate(calls):
            where = f"tool_calls[{j}]"
            if not isinstance(call, Mapping) or not isinstance(call.get("id"), str):
                raise _bad(index, where, "must be a dict with a string 'id'")
            fn = call.get("function")
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise _bad(index, f"{where}.function", "must be a dict with a string 'name'")
            if not isinstance(fn.get("arguments", ""), str):
                raise _bad(index, f"{where}.function.arguments", "must be a JSON string")
    if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
        raise _bad(index, "tool_call_id", "is required on tool messages and must be a string")
    for key in ("name", "tool_call_id"):
        if key in msg and not isinstance(msg[key], str):
            raise _bad(index, key, "must be a string")
    for key, value in msg.items():
        if key not in ("role", "content", "tool_calls", "tool_call_id", "name"):
            _check_json(value, index, key)
    _check_text(msg, index)


def validate_messages(messages: Any, *, start: int = 0) -> list[Message]:
    """Check a message list and return it as a list of plain dicts (copied shallowly)."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidMessageError(
            f"messages must be a list of dicts, got {type(messages).__name__}"
        )
    out: list[Message] = []
    for i, msg in enumerate(messages, start):
        validate_message(msg, i)
        out.append(dict(msg))  # type: ignore[arg-type]
    return out

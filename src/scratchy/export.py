"""Exports of a session: JSON (the user guide's format), TOON and a Markdown transcript, with
optional redaction of secrets."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .messages import Message, text_of

FORMATS = ("json", "toon", "md")

# Names that hold secrets: password, passwd, passphrase, pwd, secret, token, apikey, *_key,
# credentials; with any prefix (OPENAI_API_KEY, db_password, x-api-key) and a suffix after _ or
# - (secret_key, token_value), but not "tokens", "max_tokens", "monkey" or a bare "key".
_SECRET_NAME = (
    r"[A-Za-z0-9_.-]*?(?:pass(?:word|wd|phrase)|pwd|secret|token|apikey|[_-]key"
    r"|credentials?)(?:[_-][A-Za-z0-9_-]*)?"
)
_SECRET_KEY = re.compile(rf"(?i)^{_SECRET_NAME}$")

_SECRET_PATTERNS = [
    # vendor API keys
    re.compile(
        r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|gsk_[A-Za-z0-9]{20,}|"
        r"AIza[0-9A-Za-z_-]{30,}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,}|"
        r"AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{30,})\b"
    ),
    # bearer tokens and basic auth headers
    re.compile(r"(?i)(\b(?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=-]{12,}"),
    # quoted keys, as in JSON, Python or YAML: "password": "x", 'api_key': 'x', "token": 12,
    # and the same inside an encoded JSON string (\"password\": \"x\")
    re.compile(
        rf"(?i)((\\?[\"']){_SECRET_NAME}\2\s*[:=]\s*)"
        r"(\"(?:[^\"\\\n]|\\.)*\"|\\\"(?:[^\"\\\n]|\\[^\"\n])*\\\"|'[^'\n]*'"
        r"|[^\s,;}\]\"'\\]+)"
    ),
    # assignments, .env lines and YAML: OPENAI_API_KEY=x, db_password=x, secret: x
    re.compile(
        rf"(?i)((?<![A-Za-z0-9_.-]){_SECRET_NAME}\s*(?:=|:(?!//))\s*)"
        r"(\"[^\"\n]*\"|'[^'\n]*'|(?!\[REDACTED\])[^\s,;&#\"']+)"
    ),
    # command-line flags: --password hunter2, --api-key=X, --token 'x y'
    re.compile(
        rf"(?i)((?<![A-Za-z0-9_-])--?{_SECRET_NAME}(?:\s+|=))"
        r"(\"[^\"\n]*\"|'[^'\n]*'|(?!-)[^\s\"']+)"
    ),
    # passwords inside URLs
    re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)"),
]
MASK = "[REDACTED]"


def _mask(match: re.Match[str]) -> str:
    """The match with its value (the last group) masked, quotes kept so JSON stays valid."""
    last = match.re.groups
    value = match.group(last)
    if value.strip("\\\"'") == MASK:
        return match.group(0)
    head = match.group(0)[: match.start(last) - match.start(0)]
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return f"{head}{quote}{MASK}{quote}"
    if match.re is _SECRET_PATTERNS[2] and match.group(2).endswith('"'):
        return f"{head}{match.group(2)}{MASK}{match.group(2)}"  # "pin": 1234 stays JSON
    return head + MASK


def redact_text(text: str) -> str:
    """``text`` with API keys, bearer tokens, secret assignments (``NAME_KEY=...``,
    ``"password": "..."``), secret command-line flags (``--password ...``) and URL passwords
    masked."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups == 0:  # the whole match is the secret
            text = pattern.sub(MASK, text)
        elif pattern.groups == 1:  # group 1 is what comes before the secret
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:  # the last group is the value, maybe quoted
            text = pattern.sub(_mask, text)
    return text


def _redact_json_text(text: str) -> str:
    """A tool call's ``arguments`` (JSON text): redacted as data, so that secrets are found at
    any depth of escaping; text that is not JSON is redacted as text."""
    try:
        data = json.loads(text)
    except ValueError:
        return redact_text(text)
    if not isinstance(data, (dict, list)):
        return redact_text(text)
    return json.dumps(_redact(data), ensure_ascii=False)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            secret_key = isinstance(k, str) and _SECRET_KEY.match(k) is not None
            if secret_key and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                out[k] = MASK
            elif k == "arguments" and isinstance(v, str):
                out[k] = _redact_json_text(v)
            else:
                out[k] = _redact(v)
        return out
    return value


def redact_messages(messages: list[Message]) -> list[Message]:
    """A copy of ``messages`` with every string value redacted (see :func:`redact_text`), and
    the values of keys named like secrets (``password``, ``api_key``...) masked."""
    return _redact(copy.deepcopy(messages))  # type: ignore[no-any-return]


def short(value: Any, limit: int = 80) -> str:
    """``value`` on one line, at most ``limit`` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_summary(name: str, arguments: str | dict[str, Any], *, brief: bool = False) -> str:
    """``name(key=value, ...)`` for a tool call; ``brief`` shortens it to fit one line."""

    def cut(text: Any, limit: int) -> str:
        return short(text, limit) if brief else str(text)

    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return f"{name}({cut(arguments, 60)})"
    if not isinstance(arguments, dict):
        return f"{name}({cut(arguments, 60)})"
    parts = [f"{k}={cut(json.dumps(v, ensure_ascii=False), 40)}" for k, v in arguments.items()]
    return f"{name}({cut(', '.join(parts), 100)})"


def to_markdown(messages: list[Message], title: str = "") -> str:
    """A readable transcript: each message under its role, tool calls and results folded, and
    compacted (summarised) turns kept in a folded block."""
    out = [f"# {title}" if title else "# Session", ""]
    for msg in messages:
        role = str(msg.get("role", ""))
        if role == "tool":
            out += [
                f"<details><summary>Result of {msg.get('name') or 'tool'}</summary>",
                "",
                "```",
                text_of(msg),
                "```",
                "",
                "</details>",
                "",
            ]
            continue
        text = text_of(msg)
        if text:
            out += [f"**{role.capitalize()}:**", "", text, ""]
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            out += [f"> ⚙ `{call_summary(fn.get('name', '?'), fn.get('arguments', ''))}`", ""]
        inner = msg.get("compacted")
        if isinstance(inner, list):
            body = to_markdown(inner).split("\n", 2)[-1]
            out += [
                f"<details><summary>{len(inner)} earlier messages</summary>",
                "",
                body,
                "",
                "</details>",
                "",
            ]
    return "\n".join(out).rstrip()


def export_text(
    messages: list[Message], fmt: str = "json", *, session_id: str = "", redact: bool = False
) -> str:
    """The messages as ``json`` (a list, as the user guide exports), ``toon`` or ``md``."""
    if redact:
        messages = redact_messages(messages)
    if fmt == "json":
        return json.dumps(messages, indent=2, ensure_ascii=False)
    if fmt == "toon":
        from . import toon

        return toon.dumps({"session_id": session_id, "messages": messages})
    if fmt == "md":
        return to_markdown(messages, session_id)
    raise ValueError(f"unknown export format {fmt!r}: use json, toon or md")

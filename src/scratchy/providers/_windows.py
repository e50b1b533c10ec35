"""Context windows of known model families, and how servers report theirs.

The table is matched by the longest prefix of the model name (case-insensitive, an ``org/``
prefix ignored), per provider; a model not listed has no known window (``None``). Pass
``context_window=`` to a provider (or ``resolve_provider``) for anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "KNOWN_CONTEXT_WINDOWS",
    "known_context_window",
    "reported_context_window",
    "window_from_error",
]

_OPENAI = {
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "chatgpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4-1106": 128_000,
    "gpt-4-0125": 128_000,
    "gpt-4-32k": 32_768,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1-mini": 128_000,
    "o1-preview": 128_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4": 200_000,
}
_ANTHROPIC = {
    "claude-instant": 100_000,
    "claude-2.0": 100_000,
    "claude-2.1": 200_000,
    "claude-": 200_000,
}
_GEMINI = {
    "gemini-1.0": 32_760,
    "gemini-pro": 32_760,
    "gemini-1.5-pro": 2_097_152,
    "gemini-1.5": 1_048_576,
    "gemini-2": 1_048_576,
    "gemini-3": 1_048_576,
}
_GROQ = {
    "llama-3.1": 131_072,
    "llama-3.2": 131_072,
    "llama-3.3": 131_072,
    "llama-4": 131_072,
    "llama3-": 8_192,
    "llama-guard": 131_072,
    "gemma2": 8_192,
    "mixtral-8x7b": 32_768,
    "deepseek-r1-distill": 131_072,
    "qwen-qwq": 131_072,
    "qwen3": 131_072,
    "kimi-k2": 131_072,
    "gpt-oss": 131_072,
    "compound": 131_072,
}

KNOWN_CONTEXT_WINDOWS: dict[str, dict[str, int]] = {
    "openai": _OPENAI,
    "anthropic": _ANTHROPIC,
    "gemini": _GEMINI,
    "groq": _GROQ,
    # A server of unknown make: its own report comes first; a proxy serving well-known model
    # names (LiteLLM and the like) still gets the vendors' figures.
    "openai-compatible": {**_OPENAI, **_ANTHROPIC, **_GEMINI},
}
"""Provider name → {model-name prefix: context window in tokens}. Ollama and local servers are
absent on purpose: their window is whatever the server was started with."""


def known_context_window(provider: str, model: str) -> int | None:
    """The context window of ``model`` on ``provider`` from :data:`KNOWN_CONTEXT_WINDOWS`.

    Args:
        provider: Provider name (``openai``, ``anthropic``, ``gemini``, ``groq``...).
        model: Model name; matched by its longest listed prefix, ignoring case and an
            ``org/`` prefix (``meta-llama/llama-4-scout...``, ``models/gemini-2.0-flash``).

    Returns:
        Tokens, or ``None`` for a model (or provider) not in the table.
    """
    table = KNOWN_CONTEXT_WINDOWS.get(provider)
    if not table or not model:
        return None
    name = model.strip().lower().rsplit("/", 1)[-1]
    best = max((p for p in table if name.startswith(p)), key=len, default=None)
    return table[best] if best is not None else None


_REPORT_KEYS = ("max_model_len", "context_window", "context_length", "max_context_length")
_META_KEYS = ("n_ctx", "n_ctx_train")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return int(value)
    return None


def _entry_window(entry: Mapping[str, Any]) -> int | None:
    for key in _REPORT_KEYS:
        found = _positive_int(entry.get(key))
        if found:
            return found
    meta = entry.get("meta")
    if isinstance(meta, Mapping):
        for key in _META_KEYS:
            found = _positive_int(meta.get(key))
            if found:
                return found
    return None


def reported_context_window(listing: Any, model: str) -> int | None:
    """The context window a server states in its ``GET /models`` answer.

    Read from the entry whose ``id`` is ``model`` (or the only entry, as a server with one model
    answers to any name): vLLM's ``max_model_len``, Groq's ``context_window``, OpenRouter's and
    LM Studio's ``context_length``/``max_context_length``, llama.cpp's ``meta.n_ctx`` (else
    ``meta.n_ctx_train``).

    Args:
        listing: The decoded JSON answer (``{"data": [...]}``).
        model: The model name the provider sends.

    Returns:
        Tokens, or ``None`` when the server does not say.
    """
    data = listing.get("data") if isinstance(listing, Mapping) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, Mapping)]
    chosen = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in chosen:
        found = _entry_window(entry)
        if found:
            return found
    return None


_ERROR_PATTERNS = (
    # OpenAI, vLLM, llama-cpp-python's server: "This model's maximum context length is 2048
    # tokens. However, you requested ..."
    re.compile(r"maximum context length is (\d[\d,]*) tokens", re.IGNORECASE),
    # Anthropic: "prompt is too long: 201234 tokens > 200000 maximum"
    re.compile(r"tokens > (\d[\d,]*) maximum", re.IGNORECASE),
    # llama.cpp's llama-server: "... exceeds the available context size (4096 tokens)"
    re.compile(r"available context size \((\d[\d,]*) tokens\)", re.IGNORECASE),
)


def window_from_error(text: str) -> int | None:
    """The context window a server states when it refuses a prompt that is too long.

    Args:
        text: The server's error message.

    Returns:
        Tokens, or ``None`` when the message does not state a context window.
    """
    for pattern in _ERROR_PATTERNS:
        match = pattern.search(text)
        if match:
            return _positive_int(int(match.group(1).replace(",", "")))
    return None

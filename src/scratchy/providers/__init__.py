"""Model providers, chosen by name: ``"provider:model"`` strings resolved through a small map.

Example::

    resolve_provider("groq:llama-3.1-8b-instant")
    resolve_provider(llm="ollama", model="llama3.2")        # the original Scratchy form
    resolve_provider("qwen2.5", base_url="http://127.0.0.1:8080/v1")   # any compatible server
    resolve_provider()                                      # $SCRATCHY_MODEL, else "local"

Vendor SDKs (``openai``, ``anthropic``, ``llama_cpp``) are imported only when their provider is
resolved, so ``import scratchy.providers`` stays light.
"""

from __future__ import annotations

import inspect
import os
from importlib import import_module
from typing import Any

from ..errors import UsageError
from .base import ModelResponse, Provider, TextDelta, ToolSchema, Usage, complete

__all__ = [
    "DEFAULT_MODEL",
    "PROVIDERS",
    "ModelResponse",
    "Provider",
    "TextDelta",
    "ToolSchema",
    "Usage",
    "complete",
    "parse_model_id",
    "resolve_provider",
]

DEFAULT_MODEL = "local"
"""Used when neither an argument nor ``SCRATCHY_MODEL`` names a model: the embedded SmolLM2."""

MODEL_ENV = "SCRATCHY_MODEL"

_COMPAT = ("scratchy.providers.openai_compat", "OpenAICompatProvider")
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("scratchy.providers.local", "LocalProvider"),
    "openai": _COMPAT,
    "groq": _COMPAT,
    "ollama": _COMPAT,
    "gemini": _COMPAT,
    "openai-compatible": _COMPAT,
    "anthropic": ("scratchy.providers.anthropic", "AnthropicProvider"),
    "fake": ("scratchy.testing", "fake_provider"),
}
"""Provider name → (module, class). Every class takes ``(model, *, name=..., ...)``."""

_ALIASES = {
    "compat": "openai-compatible",
    "openai_compatible": "openai-compatible",
    "claude": "anthropic",
    "google": "gemini",
    "llama-cpp": "local",
    "llamacpp": "local",
}

# Bare model names whose provider is obvious from the name.
_BARE_PREFIXES = (
    ("gpt-", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("smollm", "local"),
)


def _valid() -> str:
    return ", ".join(PROVIDERS)


def _provider_name(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PROVIDERS:
        raise UsageError(
            f"unknown provider {name!r}: use one of {_valid()} "
            f"(written 'provider:model', e.g. 'groq:llama-3.1-8b-instant')"
        )
    return key


def parse_model_id(model: str, *, base_url: str | None = None) -> tuple[str, str | None]:
    """Split a model id into ``(provider, model)``.

    Only the first colon separates the provider, so ``ollama:llama3.2:3b`` keeps its tag.

    Args:
        model: ``"provider:model"``, ``"provider:"``, a provider name alone (``"local"``), a
            ``.gguf`` path, or a bare model name whose provider is obvious (``gpt-4o``,
            ``claude-...``, ``gemini-...``).
        base_url: When given, a bare name (even one with a colon) is served by this
            OpenAI-compatible server.

    Returns:
        The provider name (a key of :data:`PROVIDERS`) and the model (``None`` for the provider's
        default).

    Raises:
        UsageError: Unknown provider, or a bare name whose provider cannot be told.
    """
    text = model.strip()
    if not text:
        return ("openai-compatible" if base_url else DEFAULT_MODEL), None
    prefix, sep, rest = text.partition(":")
    key = _ALIASES.get(prefix.lower(), prefix.lower())
    if sep and key in PROVIDERS:
        return key, (rest.strip() or None)
    if not sep and key in PROVIDERS:
        return key, None
    if base_url:
        return "openai-compatible", text
    if text.lower().endswith(".gguf"):
        return "local", text
    if sep and "/" not in prefix and "\\" not in prefix:
        raise UsageError(f"unknown provider {prefix!r} in {model!r}: use one of {_valid()}")
    lowered = text.lower()
    for start, provider in _BARE_PREFIXES:
        if lowered.startswith(start):
            return provider, text
    raise UsageError(
        f"cannot tell which provider serves {model!r}: write 'provider:model' "
        f"(providers: {_valid()}), or pass base_url=... for an OpenAI-compatible server"
    )


def _provider_class(name: str) -> type[Any]:
    module_name, class_name = PROVIDERS[name]
    return getattr(import_module(module_name), class_name)


def resolve_provider(
    model: str | None = None,
    *,
    llm: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    **options: Any,
) -> Provider:
    """Build the provider a model id names.

    The model is chosen in this order: the ``model`` argument, then the ``SCRATCHY_MODEL``
    environment variable, then ``"local"`` (the embedded SmolLM2-135M, no key or server needed).

    Args:
        model: ``"provider:model"`` (``openai:gpt-4o-mini``, ``groq:llama-3.1-8b-instant``,
            ``ollama:llama3.2``, ``gemini:gemini-2.0-flash``, ``anthropic:claude-...``,
            ``local:``, ``local:smollm2``, ``local:/path/model.gguf``); with ``llm``, the bare
            model name; with ``base_url``, the model name on that server.
        llm: Provider name, the original Scratchy form (``llm="ollama", model="llama3.2"``).
        api_key: API key; default from the provider's environment variable.
        base_url: URL of an OpenAI-compatible server (``http://127.0.0.1:8080/v1``).
        **options: Passed to the provider class (``temperature``, ``max_tokens``, ``timeout``,
            ``max_retries``; ``model_path``/``n_ctx`` for ``local``).

    Returns:
        A ready :class:`~scratchy.providers.base.Provider`; nothing is sent yet.

    Raises:
        UsageError: Unknown provider or option (the message lists the valid ones).
        MissingCredentialsError: The provider needs a key that is not set; names the variable.
        MissingDependencyError: The provider's SDK is not installed; names the extra.
    """
    if llm is not None:
        name = _provider_name(llm)
        model_name: str | None = model
        if model:
            prefix, sep, rest = model.partition(":")
            if sep and _ALIASES.get(prefix.lower(), prefix.lower()) == name:
                model_name = rest or None
    else:
        spec = model if model is not None else os.environ.get(MODEL_ENV)
        if spec is None or not spec.strip():
            spec = "" if base_url else DEFAULT_MODEL
        name, model_name = parse_model_id(spec, base_url=base_url)

    cls = _provider_class(name)
    kwargs: dict[str, Any] = dict(options)
    if api_key is not None:
        kwargs["api_key"] = api_key
    if base_url is not None:
        kwargs["base_url"] = base_url
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params) - {"name"})
        if unknown:
            accepted = sorted(p for p in params if p not in ("self", "model", "name"))
            raise UsageError(
                f"provider {name!r} does not take {', '.join(unknown)}; "
                f"it accepts: {', '.join(accepted)}"
            )
    return cls(model_name, name=name, **kwargs)

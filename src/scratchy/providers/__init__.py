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
from ._windows import KNOWN_CONTEXT_WINDOWS, known_context_window
from .base import (
    BaseProvider,
    ModelResponse,
    Provider,
    TextDelta,
    ToolSchema,
    Usage,
    as_provider,
    complete,
)

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_CONTEXT_WINDOWS",
    "PROVIDERS",
    "BaseProvider",
    "ModelResponse",
    "Provider",
    "TextDelta",
    "ToolSchema",
    "Usage",
    "as_provider",
    "complete",
    "inherited_settings",
    "known_context_window",
    "parse_model_id",
    "resolve_provider",
    "switch_model",
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
            ``max_retries``, ``context_window`` (overrides the known window of the model),
            ``streaming``; ``model_path``/``n_ctx``/``tools`` for ``local``).

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


_MODEL_SPECIFIC = frozenset({"model_path", "context_window"})
"""Settings that describe the model rather than the connection: never inherited."""
_CONNECTION = frozenset({"api_key", "base_url"})
"""Settings inherited only by a provider of the same name (a key must not reach another)."""


def _target(current: Provider, model: str) -> tuple[str, str | None]:
    """Which provider serves ``model`` when switching from ``current``."""
    text = model.strip()
    prefix, sep, rest = text.partition(":")
    key = _ALIASES.get(prefix.lower(), prefix.lower())
    if key in PROVIDERS:
        return key, (rest.strip() or None) if sep else None
    # On Ollama or a self-hosted server every bare name (tags included: "qwen2.5:7b") is
    # another model of the same server.
    if "base_url" in current.settings or current.name in ("openai-compatible", "ollama"):
        return current.name, text or None
    try:
        return parse_model_id(text)
    except UsageError:
        if sep:  # "mistral:large": an unknown provider, not a model name
            raise
    return current.name, text or None  # a bare name: another model of the same provider


def inherited_settings(current: Provider | None, model: str) -> tuple[str, dict[str, Any]]:
    """The model id and options :func:`switch_model` resolves to replace ``current``.

    ``model`` with a provider prefix (``anthropic:...``) names that provider; a bare name names
    another model of the current provider (or the provider it obviously belongs to, such as
    ``gpt-4o``, unless the current one is Ollama or a self-hosted server, where any name, tags
    included, is another model of the same server). The current provider's
    :attr:`~scratchy.providers.base.Provider.settings` carry over: all of them to a provider of
    the same name; to another provider only the options it accepts, without ``api_key`` and
    ``base_url``. ``model_path`` and ``context_window`` describe one model and never carry over.

    Args:
        current: The provider being replaced (``None``: nothing to inherit).
        model: The new model id, as typed after ``/model``.

    Returns:
        ``(model_id, options)`` for :func:`resolve_provider`.

    Raises:
        UsageError: Unknown provider prefix.
    """
    if current is None:
        return model, {}
    current = as_provider(current)
    name, model_name = _target(current, model)
    settings = {k: v for k, v in current.settings.items() if k not in _MODEL_SPECIFIC}
    if name != current.name:
        params = inspect.signature(_provider_class(name)).parameters
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        settings = {
            k: v
            for k, v in settings.items()
            if k not in _CONNECTION and (open_ended or k in params)
        }
    return f"{name}:{model_name or ''}", settings


async def switch_model(current: Provider | None, model: str, **options: Any) -> Provider:
    """Build the provider for ``model`` in place of ``current``, then close ``current``.

    What carries over is described in :func:`inherited_settings`; ``options`` override it. When
    the new provider cannot be built (unknown provider, missing key or SDK), the error is raised
    and ``current`` is left open and usable.

    Example::

        provider = await switch_model(provider, "gpt-4.1")          # same key and base URL
        provider = await switch_model(provider, "anthropic:claude-sonnet-4-6")

    Args:
        current: The provider in use (``None``: just resolve ``model``).
        model: The new model id (``"provider:model"``, or a bare model name).
        **options: Options for the new provider, over the inherited ones.

    Returns:
        The new provider; ``current`` has been closed (``await current.aclose()``).
    """
    model_id, inherited = inherited_settings(current, model)
    provider = resolve_provider(model_id, **{**inherited, **options})
    if current is not None and provider is not current:
        await as_provider(current).aclose()
    return provider

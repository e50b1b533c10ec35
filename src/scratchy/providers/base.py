"""The Provider protocol every model backend implements, and :class:`BaseProvider`.

A provider turns the session's OpenAI-shaped messages and tool schemas into one vendor request
and streams the answer back as :class:`TextDelta` events followed by one :class:`ModelResponse`.
Translation to the vendor's own format happens inside each adapter only.

The optional capabilities are part of the protocol (``context_window``, ``supports_tools``,
``can_stream``, ``load()``, ``aclose()``), so callers read them instead of probing with
``getattr``; :class:`BaseProvider` gives every one a default. An object that only has ``name``,
``model`` and ``stream`` still works: :func:`as_provider` gives it the defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..messages import Message


@dataclass(slots=True)
class Usage:
    """Token counts reported by the provider for one model call."""

    input_tokens: int = 0
    """Prompt tokens."""
    output_tokens: int = 0
    """Completion tokens."""
    cache_read_tokens: int = 0
    """Of ``input_tokens``, those read from the vendor's prompt cache (billed lower)."""
    cache_write_tokens: int = 0
    """Of ``input_tokens``, those written to the vendor's prompt cache (Anthropic bills more)."""


@dataclass(slots=True)
class TextDelta:
    """A piece of the assistant's text, as it streams in."""

    text: str


@dataclass(slots=True)
class ModelResponse:
    """The complete answer of one model call."""

    message: Message
    """An assistant message (``content`` and optional ``tool_calls``) in the OpenAI shape."""
    usage: Usage | None = None
    finish_reason: str | None = None
    raw: Any = field(default=None, repr=False)
    """The vendor's own response object, for debugging."""


ToolSchema = dict[str, Any]
"""An OpenAI function-tool schema: ``{"type": "function", "function": {name, description,
parameters}}``."""


@runtime_checkable
class Provider(Protocol):
    """A model backend. ``stream`` yields ``TextDelta``s, then exactly one ``ModelResponse``."""

    name: str
    """Provider name as used in ``"provider:model"`` (``openai``, ``anthropic``, ``local``...)."""
    model: str
    """The model name sent to the vendor."""
    context_window: int | None
    """Tokens the model accepts (prompt plus answer); ``None`` when unknown."""
    supports_tools: bool
    """Whether tool schemas passed to ``stream`` reach the model (else they are ignored)."""
    can_stream: bool
    """Whether text arrives in pieces; when ``False`` the stream yields one ``ModelResponse``."""
    loaded: bool
    """``False`` while a slow load (a local model into memory) is still ahead, so that the first
    request would wait for it; ``True`` otherwise."""
    settings: dict[str, Any]
    """The options the provider was created with that differ from its defaults (``api_key``,
    ``base_url``, ``temperature``...); a provider that replaces it inherits them."""

    def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Send one request and stream the answer."""
        ...

    async def load(self) -> None:
        """Get ready ahead of the first request (load a local model, ask a server its limits).

        Idempotent and cheap once done; never required before ``stream``.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and clients; the provider may be used again afterwards."""
        ...


class BaseProvider:
    """Defaults for the optional half of :class:`Provider`; subclasses implement ``stream``.

    Args:
        name: Provider name, as in ``"provider:model"``.
        model: Model name sent to the vendor.
        context_window: An explicit context window; ``None`` leaves it to
            :meth:`_default_context_window` (the provider's own knowledge).
    """

    supports_tools: bool = True
    can_stream: bool = True

    def __init__(self, *, name: str, model: str, context_window: int | None = None) -> None:
        if context_window is not None and (
            isinstance(context_window, bool)
            or not isinstance(context_window, int)
            or context_window <= 0
        ):
            from ..errors import UsageError

            raise UsageError(f"context_window must be a positive integer, not {context_window!r}")
        self.name = name
        self.model = model
        self._context_window = context_window
        self.settings: dict[str, Any] = {}
        """The keyword arguments this provider was created with that differ from the defaults
        (connection and sampling options); :func:`~scratchy.providers.switch_model` hands them
        to the provider that replaces this one."""

    def _remember(self, arguments: dict[str, Any]) -> None:
        """Record in :attr:`settings` the keyword arguments given that differ from the defaults.

        Called with ``locals()`` in a subclass's ``__init__``, before any argument is reassigned;
        only its keyword-only parameters count (``name`` never does).
        """
        params = inspect.signature(type(self)).parameters
        for key, param in params.items():
            if key in ("model", "name") or param.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            value = arguments.get(key, param.default)
            if value is not param.default and value != param.default:
                self.settings[key] = value

    @property
    def context_window(self) -> int | None:
        """Tokens the model accepts: the ``context_window=`` given, else what the provider
        knows (a table of model families, the server's report, the local ``n_ctx``)."""
        if self._context_window is not None:
            return self._context_window
        return self._default_context_window()

    def _default_context_window(self) -> int | None:
        return None

    @property
    def loaded(self) -> bool:
        """``True``: nothing needs loading before the first request."""
        return True

    async def load(self) -> None:
        """Nothing to prepare by default."""
        return None

    async def aclose(self) -> None:
        """Nothing to release by default."""
        return None

    def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Send one request and stream the answer (implemented by each adapter)."""
        raise NotImplementedError(f"{type(self).__name__} must implement stream()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r})"


class _Adapted(BaseProvider):
    """A provider object with only ``name``, ``model`` and ``stream``, given the defaults."""

    def __init__(self, inner: Any) -> None:
        super().__init__(name=str(inner.name), model=str(inner.model))
        self.inner = inner

    def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        return self.inner.stream(messages, tools)

    def __getattr__(self, key: str) -> Any:  # the wrapped object's own attributes stay visible
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(key)
        return getattr(inner, key)


def as_provider(obj: Any) -> Provider:
    """Return ``obj`` as a full :class:`Provider`.

    An object implementing the whole protocol (every built-in provider, ``FakeProvider``, any
    :class:`BaseProvider` subclass) is returned as it is. One with only ``name``, ``model`` and
    ``stream`` (the minimal protocol of earlier releases) is wrapped so that it gets the
    defaults: no known context window, tools and streaming supported, nothing to load or close.

    Raises:
        UsageError: ``obj`` has no ``stream`` method, ``name`` or ``model``.
    """
    if isinstance(obj, Provider):
        return obj
    missing = [a for a in ("name", "model", "stream") if not hasattr(obj, a)]
    if missing or not callable(obj.stream):
        from ..errors import UsageError

        raise UsageError(
            f"{type(obj).__name__} is not a provider: it needs {', '.join(missing) or 'stream()'}"
            " (subclass scratchy.providers.BaseProvider and implement stream())"
        )
    return _Adapted(obj)


async def complete(
    provider: Provider, messages: list[Message], tools: list[ToolSchema] | None = None
) -> ModelResponse:
    """Run ``provider.stream`` to the end and return its ``ModelResponse``."""
    from ..tracing import trace_chat  # a "chat" span when a traced turn compacts its history

    final: ModelResponse | None = None
    async for event in trace_chat(provider, messages, tools or []):
        if isinstance(event, ModelResponse):
            final = event
    if final is None:
        from ..errors import ModelBehaviorError

        raise ModelBehaviorError(
            f"{provider.name} ended its stream without a response; try again",
            provider=provider.name,
        )
    return final

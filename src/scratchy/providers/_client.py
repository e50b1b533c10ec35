"""The half of every SDK-backed provider that is not about the wire format.

:class:`SDKProvider` holds what the OpenAI-compatible and Anthropic adapters share: importing
the optional SDK (a missing one names the extra to install), one async client per running event
loop, closing them all, the SDK's retries with backoff configured once (``max_retries``,
``timeout``), and one mapping of the SDKs' exceptions to :class:`~scratchy.errors.ProviderError`
with a hint saying what to do. Both SDKs share the same exception classes (``APIStatusError``,
``APITimeoutError``, ``APIConnectionError``, ``APIError``), so one mapping serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import import_module
from typing import Any

from ..errors import MissingDependencyError, ProviderError
from ._windows import window_from_error
from .base import BaseProvider

__all__ = ["RETRYABLE_STATUS", "SDKProvider", "server_message", "to_provider_error"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""HTTP statuses worth retrying later (besides every 5xx)."""


def server_message(exc: Any, limit: int = 500) -> str:
    """The server's own explanation in an SDK error (``error.message``, ``detail``...), cut to
    ``limit`` characters (some servers send whole tracebacks)."""
    text = _raw_server_message(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _raw_server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, Mapping):
                value = value.get("message")
            if isinstance(value, str) and value:
                return value
            if value:
                return json.dumps(value)
    elif isinstance(body, str) and body.strip():
        return body.strip()
    message = getattr(exc, "message", None) or str(exc)
    return str(message)


def _status_hint(status: int, key_env: Sequence[str]) -> str:
    if status in (401, 403):
        return "check the API key" + (f" ({key_env[0]})" if key_env else "")
    if status == 404:
        return "check the model name and the base URL"
    if status == 429:
        return "rate limited or out of quota; wait and try again"
    if status == 529:
        return "the service is overloaded; try again later"
    if status >= 500:
        return "the server failed; try again later"
    return ""


def to_provider_error(
    exc: BaseException,
    sdk: Any,
    provider: str,
    *,
    base_url: str = "",
    key_env: Sequence[str] = (),
    connect_hint: str = "",
) -> ProviderError:
    """Map an ``openai`` or ``anthropic`` SDK exception to a :class:`ProviderError`.

    Args:
        exc: The exception raised by the SDK.
        sdk: The SDK module (``openai`` or ``anthropic``) whose exception classes to test.
        provider: Provider name for the message.
        base_url: The server's URL, named in connection errors.
        key_env: Environment variables holding the key, named in 401/403 hints.
        connect_hint: Appended to connection errors (how to start a local server).

    Returns:
        A ``ProviderError`` with ``status`` (HTTP status or ``None``), the server's message, a
        hint, and ``retryable`` set for rate limits, server errors, timeouts and connection
        failures.
    """
    where = f" ({base_url})" if base_url else ""
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        hint = _status_hint(status, key_env)
        text = f"{provider} answered HTTP {status}: {server_message(exc)}"
        return ProviderError(
            text + (f" ({hint})" if hint else ""),
            provider=provider,
            status=status,
            retryable=status in RETRYABLE_STATUS or status >= 500,
        )
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(
            f"{provider} did not answer in time{where}; try again or raise timeout=",
            provider=provider,
            retryable=True,
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        hint = f"; {connect_hint}" if connect_hint else ""
        return ProviderError(
            f"cannot reach {provider} at {base_url or 'its default URL'}{detail}{hint}",
            provider=provider,
            retryable=True,
        )
    if isinstance(exc, sdk.APIError):  # e.g. an error event in the middle of a stream
        return ProviderError(
            f"{provider} reported an error: {server_message(exc)}", provider=provider
        )
    return ProviderError(f"{provider} failed: {exc}", provider=provider)


class SDKProvider(BaseProvider):
    """A provider that reaches its vendor through an official async SDK client.

    Subclasses set the class attributes naming the SDK and implement :meth:`_new_client` (build
    one client from :meth:`_client_options`) and ``stream`` (translate the request and the
    answer, inside ``with self._sdk_errors():``).

    Args:
        name: Provider name, shown in errors.
        model: Model name sent to the vendor.
        api_key: The key to send (``None``: the SDK's own default, if any).
        base_url: The endpoint (``None``: the SDK's default).
        max_retries: Retries of rate-limited, failed (5xx), timed-out or unreachable requests,
            with the SDK's exponential backoff (it honours ``Retry-After``).
        timeout: Seconds to wait for one attempt.
        context_window: Override of the model's context window.
    """

    sdk_module: str = ""
    """The SDK's import name (``openai``, ``anthropic``)."""
    sdk_extra: str = ""
    """The ``scratchy[...]`` extra that installs it."""
    sdk_purpose: str = ""
    """What needs it, for the missing-package message."""
    sdk_error: str = ""
    """The SDK's root exception class name (``OpenAIError``, ``AnthropicError``)."""
    key_env: tuple[str, ...] = ()
    """Environment variables holding the key, named in authentication errors."""
    connect_hint: str = ""
    """What to do when the server cannot be reached."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: str | None,
        base_url: str | None,
        max_retries: int,
        timeout: float,
        context_window: int | None = None,
    ) -> None:
        super().__init__(name=name, model=model, context_window=context_window)
        self._api_key = api_key
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._reported_window: int | None = None
        """The context window the server stated (in a model listing or an error)."""
        self.sdk  # noqa: B018 - fail now, not at the first request, when the SDK is missing

    @property
    def sdk(self) -> Any:
        """The vendor SDK module, imported on first use."""
        try:
            return import_module(self.sdk_module)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(self.sdk_module, self.sdk_extra, self.sdk_purpose) from exc

    def _client_options(self) -> dict[str, Any]:
        """Keyword arguments of the SDK client: key, URL, retries and timeout, set once here."""
        options: dict[str, Any] = {"max_retries": self.max_retries, "timeout": self.timeout}
        if self._api_key:
            options["api_key"] = self._api_key
        if self.base_url:
            options["base_url"] = self.base_url
        return options

    def _new_client(self) -> Any:
        """A new SDK client for the running event loop."""
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The SDK client of the running event loop, created on first use in that loop.

        An SDK client's connection pool belongs to the loop it was first used in (a REPL or a
        test that calls ``asyncio.run`` per turn runs a new loop each time), so each loop gets
        its own; those of loops that have ended are dropped.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for ended in [other for other in self._clients if other.is_closed()]:
                del self._clients[ended]  # its connections ended with it
            client = self._clients[loop] = self._new_client()
        return client

    async def aclose(self) -> None:
        """Close every client: this loop's directly, another running loop's in that loop."""
        current = asyncio.get_running_loop()
        clients, self._clients = self._clients, {}
        for loop, client in clients.items():
            if loop is current:
                await client.close()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(client.close(), loop)
                await asyncio.wrap_future(future)

    def _default_context_window(self) -> int | None:
        if self._reported_window is not None:
            return self._reported_window
        return self._known_context_window()

    def _known_context_window(self) -> int | None:
        """The window of the model from the table of known model families."""
        return None

    def provider_error(self, exc: BaseException) -> ProviderError:
        """This provider's :class:`ProviderError` for an SDK exception.

        A refusal that states the context window ("maximum context length is 2048 tokens")
        also teaches it to :attr:`context_window`, so the next turn can compact first.
        """
        if isinstance(exc, self.sdk.APIStatusError):
            stated = window_from_error(_raw_server_message(exc))
            if stated is not None:
                self._reported_window = stated
        return to_provider_error(
            exc,
            self.sdk,
            self.name,
            base_url=str(self.base_url or self._default_url()),
            key_env=self.key_env,
            connect_hint=self.connect_hint,
        )

    def _default_url(self) -> str:
        return ""

    @contextlib.contextmanager
    def _sdk_errors(self) -> Iterator[None]:
        """Turn the SDK's exceptions raised inside the block into :class:`ProviderError`."""
        try:
            yield
        except getattr(self.sdk, self.sdk_error) as exc:
            raise self.provider_error(exc) from exc

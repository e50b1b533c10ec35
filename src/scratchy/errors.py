"""One error hierarchy for Scratchy.

Every error the package raises on purpose derives from :class:`ScratchyError`, and its message
says what to do next. ``ToolError`` is raised *by tools* and is reported to the model, not to you.
"""

from __future__ import annotations


class ScratchyError(Exception):
    """Root of every error Scratchy raises on purpose."""


AgentError = ScratchyError
"""Alias kept for readers of ../shared/STYLE.md, which calls the root ``AgentError``."""


class UsageError(ScratchyError, ValueError):
    """A mistake in how the library is called (bad argument, bad configuration)."""


class ConfigError(UsageError):
    """A configuration file or environment variable holds a value Scratchy cannot use."""


class MissingDependencyError(UsageError, ImportError):
    """An optional package is needed; the message names the install command."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose}: the '{package}' package is not installed; install it with  "
            f"pip install 'scratchy[{extra}]'  (from a checkout: pip install -e '.[{extra}]')"
        )
        self.package = package
        self.extra = extra


# --- sessions ---------------------------------------------------------------------------------


class SessionError(ScratchyError):
    """Base class of errors about stored sessions."""


class InvalidSessionIdError(SessionError, UsageError):
    """A session id that cannot be used as a name on disk or in a store."""


class InvalidMessageError(SessionError, UsageError):
    """A message list that is not in the OpenAI chat shape; names the index and the field."""

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class SessionCorruptedError(SessionError):
    """A stored session cannot be read; names the file, the line and what is wrong."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


class SessionConflictError(SessionError):
    """Another writer changed the session since it was read; nothing was written.

    ``expected``/``actual`` are message counts (-1 when not meaningful);
    ``expected_version``/``actual_version`` the store's version tokens when the write named one
    (``""`` stands for "no such session").
    """

    def __init__(
        self,
        message: str,
        *,
        session_id: str,
        expected: int = -1,
        actual: int = -1,
        expected_version: str | None = None,
        actual_version: str | None = None,
    ):
        super().__init__(message)
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        self.expected_version = expected_version
        self.actual_version = actual_version


class SessionBusyError(SessionError):
    """The session is running a turn in another task, process or machine; retry later."""

    def __init__(self, message: str, *, session_id: str, retry_after: float = 1.0):
        super().__init__(message)
        self.session_id = session_id
        self.retry_after = retry_after


class SessionNotFoundError(SessionError, KeyError):
    """The session does not exist in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class StoreUnavailableError(SessionError):
    """A session store (database server) cannot be reached; names the URL without password."""


# --- models and tools ---------------------------------------------------------------------------


class ProviderError(ScratchyError):
    """A model provider failed; ``status`` is the HTTP status when there is one."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retryable = retryable


class MissingCredentialsError(ProviderError, UsageError):
    """No API key for a provider; the message names the environment variable to set."""

    def __init__(self, provider: str, env_var: str) -> None:
        super().__init__(
            f"No API key for {provider}: set the {env_var} environment variable "
            f"or pass api_key=... to Agent()",
            provider=provider,
        )
        self.env_var = env_var


class ModelBehaviorError(ProviderError):
    """The model answered with something Scratchy cannot use (bad tool call, empty reply)."""


class MaxTurnsExceeded(ScratchyError):
    """The agent hit ``max_iterations`` model calls in one turn without a final answer."""


class ToolError(ScratchyError):
    """Raised by a tool to report a failure to the model (shown to it as ``Error: ...``)."""


class ToolDefinitionError(UsageError):
    """A function cannot become a tool (missing type hints, bad docstring, bad name)."""


class MCPServerError(ScratchyError):
    """An MCP server could not be started or stopped responding; names the server."""

    def __init__(self, message: str, *, server: str) -> None:
        super().__init__(message)
        self.server = server

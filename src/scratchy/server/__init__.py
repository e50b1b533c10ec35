"""``scratchy serve``: sessions over HTTP (REST, Server-Sent Events, OpenAI-compatible).

``create_app(agent_or_factory, store=..., keys=...)`` returns the ASGI app (FastAPI); the package
needs the ``scratchy[server]`` extra. Nothing heavy is imported until ``create_app`` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "Keyring", "ApiKey", "owner_store"]

if TYPE_CHECKING:
    from .app import create_app
    from .auth import ApiKey, Keyring, owner_store

_LAZY = {"create_app": ".app", "Keyring": ".auth", "ApiKey": ".auth", "owner_store": ".auth"}


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scratchy.server' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value

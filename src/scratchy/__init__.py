"""Scratchy: an agent framework whose sessions are named, persistent and resumable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Session",
    "SessionManager",
    "ScratchyError",
    "tool",
    "__version__",
]

if TYPE_CHECKING:
    from .agent import Agent, Session
    from .errors import ScratchyError
    from .sessions import SessionManager
    from .tools import tool

_LAZY = {
    "Agent": ".agent",
    "Session": ".agent",
    "SessionManager": ".sessions",
    "ScratchyError": ".errors",
    "tool": ".tools",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use so that ``import scratchy`` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scratchy' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value

"""The events of a turn (:meth:`scratchy.Agent.stream`): text as it arrives, tool calls, tool
results and the final reply. The callbacks of an ``Agent`` are derived from the same events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .providers.base import TextDelta


@dataclass(slots=True)
class ToolCallEvent:
    """The model asked for a tool."""

    call_id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolStartEvent:
    """An approved tool starts running (``args`` parsed from the call's arguments)."""

    call_id: str
    name: str
    args: dict[str, Any]


@dataclass(slots=True)
class ToolResultEvent:
    """A tool finished (``is_error`` when it failed or was refused)."""

    call_id: str
    name: str
    content: str
    is_error: bool
    exception: BaseException | None = field(default=None, repr=False)  # what the tool raised


@dataclass(slots=True)
class FinalEvent:
    """The turn ended with this reply text."""

    text: str


Event = TextDelta | ToolCallEvent | ToolStartEvent | ToolResultEvent | FinalEvent

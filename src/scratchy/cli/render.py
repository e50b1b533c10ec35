"""Text rendering of sessions: transcripts, exports and short previews."""

from __future__ import annotations

from typing import Any

from ..export import call_summary as _call_summary
from ..export import export_text, short, to_markdown
from ..messages import Message, text_of

__all__ = ["call_summary", "export_text", "format_transcript", "short", "to_markdown"]


def call_summary(name: str, arguments: str | dict[str, Any]) -> str:
    """``name(key=value, ...)`` with short values, for one-line tool call displays."""
    return _call_summary(name, arguments, brief=True)


def format_transcript(messages: list[Message]) -> str:
    """A plain-text transcript, tool calls on one line each."""
    lines: list[str] = []
    for msg in messages:
        role = msg.get("role")
        if role == "tool":
            lines.append(f"  ↳ {msg.get('name') or 'tool'}: {short(text_of(msg), 100)}")
            continue
        text = text_of(msg)
        if text:
            lines.append(f"{role}: {text}")
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {})
            lines.append(f"  ⚙ {call_summary(fn.get('name', '?'), fn.get('arguments', ''))}")
    return "\n".join(lines)


class ReplyStream:
    """Shows one streamed reply: live-rendered Markdown on a capable terminal, plain text as it
    arrives elsewhere (dumb terminals, pipes), so transcripts stay exact."""

    def __init__(self, console: Any, label: str) -> None:
        self.console = console
        self.label = label
        self.text = ""
        self.markdown = console.is_terminal and not console.is_dumb_terminal
        self._live: Any = None
        self._status: Any = None
        self._last = 0.0

    def waiting(self, message: str) -> None:
        """Show a spinner with ``message`` until the first piece of the reply (capable
        terminals only)."""
        if self.markdown and self._status is None:
            self._status = self.console.status(message, spinner="dots")
            self._status.start()

    def _stop_waiting(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def add(self, delta: str) -> None:
        """Show more of the reply."""
        import time

        self._stop_waiting()
        if not self.text and not self._live:
            self._start()
        self.text += delta
        if not self.markdown:
            self.console.print(delta, end="", markup=False)
        elif time.monotonic() - self._last > 0.05:  # redraw at most 20 times a second
            self._last = time.monotonic()
            self._live.update(self._render(), refresh=True)

    def _start(self) -> None:
        if not self.markdown:
            self.console.print(self.label, end="", markup=False)
            return
        from rich.live import Live

        self._live = Live(console=self.console, auto_refresh=False, vertical_overflow="visible")
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.markdown import Markdown
        from rich.text import Text

        return Group(Text(self.label.rstrip(), style="bold green"), Markdown(self.text))

    def close(self, final: str | None = None) -> None:
        """End the reply (``final`` is shown when nothing was streamed)."""
        self._stop_waiting()
        if final is not None and not self.text:
            self.add(final)
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None
        elif self.text or final is not None:
            self.console.print()
        self.text = ""

"""Text rendering of sessions: transcripts, exports and short previews."""

from __future__ import annotations

import re
import textwrap
from typing import Any

from ..export import call_summary as _call_summary
from ..export import export_text, short, to_markdown
from ..messages import Message, text_of

__all__ = ["call_summary", "export_text", "format_transcript", "short", "to_markdown"]


def call_summary(name: str, arguments: str | dict[str, Any]) -> str:
    """``name(key=value, ...)`` with short values, for one-line tool call displays."""
    return _call_summary(name, arguments, brief=True)


def format_transcript(messages: list[Message], width: int | None = None) -> str:
    """A plain-text transcript, tool calls on one line each.

    With ``width`` (a terminal's columns) each line of a message is wrapped at word
    boundaries, continued two columns in; a word longer than the width (a path, a URL) stays
    whole. Without it (a pipe) every line is as stored.
    """
    lines: list[str] = []

    def add(text: str) -> None:
        if width is None:
            lines.append(text)
            return
        for line in text.split("\n"):
            wrapped = textwrap.wrap(
                line,
                width=max(20, width - 1),
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            lines.extend(wrapped or [""])

    for msg in messages:
        role = msg.get("role")
        if role == "tool":
            add(f"  ↳ {msg.get('name') or 'tool'}: {short(text_of(msg), 100)}")
            continue
        text = text_of(msg)
        if text:
            add(f"{role}: {text}")
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {})
            add(f"  ⚙ {call_summary(fn.get('name', '?'), fn.get('arguments', ''))}")
    return "\n".join(lines)


_ESCAPE = re.compile(r"\\[!-/:-@\[-`{-~]")  # a backslash escape: \* \_ \# ...
_INTRAWORD_STAR = re.compile(r"[^\W_]\*+[^\W_]")  # 2*3*4: emphasis inside a word
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")  # &amp; would show as &
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`", re.S)


def clearly_markdown(text: str) -> bool:
    """True when rendering ``text`` as Markdown shows every character the model wrote, except
    the markup itself: outside code, no backslash escapes (``\\*``), no ``*`` inside a word
    (``2*3*4``) and no HTML entities (``&amp;``).

    Other text is shown exactly as written, so what is shown is what is saved.
    """
    prose = _CODE.sub("", text)
    return not any(p.search(prose) for p in (_ESCAPE, _INTRAWORD_STAR, _ENTITY))


def markdown(text: str) -> Any:
    """A rich renderable for a reply: Markdown where it is clearly Markdown (HTML is shown as
    written, links show their target), the exact text otherwise."""
    from rich.markdown import Markdown
    from rich.text import Text

    if not clearly_markdown(text):
        return Text(text)
    md = Markdown(text, hyperlinks=False)
    from markdown_it import MarkdownIt

    parser = (
        MarkdownIt().enable("strikethrough").enable("table").disable(["html_inline", "html_block"])
    )
    md.parsed = parser.parse(text)
    return md


class _Tail:
    """Renders only the last lines of a renderable that fit the screen (for the live view; the
    whole reply is printed once it is complete)."""

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.segment import Segment

        lines = console.render_lines(self.renderable, options.update(height=None), pad=False)
        keep = max(1, console.size.height - 2)
        for i, line in enumerate(lines[-keep:]):
            if i:
                yield Segment.line()
            yield from line


class ReplyStream:
    """Shows one streamed reply: live-rendered Markdown on a capable terminal, plain text as it
    arrives elsewhere (dumb terminals, pipes, ``--no-markdown``), so transcripts stay exact.

    Long replies wrap at the terminal's width; while the reply streams, the live view shows its
    last screenful, and the complete reply is printed when it ends.
    """

    def __init__(self, console: Any, label: str, *, markdown: bool = True) -> None:
        self.console = console
        self.label = label
        self.text = ""
        self.live_view = console.is_terminal and not console.is_dumb_terminal
        self.markdown = markdown
        self._live: Any = None
        self._status: Any = None
        self._last = 0.0

    def waiting(self, message: str) -> None:
        """Show a spinner with ``message`` until the first piece of the reply (capable
        terminals only)."""
        if self.live_view and self._status is None:
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
        if not self.live_view:
            self.console.print(delta, end="", markup=False)
        elif time.monotonic() - self._last > 0.05:  # redraw at most 20 times a second
            self._last = time.monotonic()
            self._live.update(_Tail(self._render()), refresh=True)

    def _start(self) -> None:
        if not self.live_view:
            self.console.print(self.label, end="", markup=False)
            return
        from rich.live import Live

        self._live = Live(
            console=self.console, auto_refresh=False, transient=True, vertical_overflow="crop"
        )
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        body = markdown(self.text) if self.markdown else Text(self.text)
        return Group(Text(self.label.rstrip(), style="bold green"), body)

    def close(self, final: str | None = None) -> None:
        """End the reply (``final`` is shown when nothing was streamed)."""
        self._stop_waiting()
        if final is not None and not self.text:
            self.add(final)
        if self._live is not None:
            self._live.stop()  # transient: the live view is erased ...
            self._live = None
            self.console.print(self._render(), soft_wrap=False)  # ... and the reply printed
        elif self.text or final is not None:
            self.console.print()
        self.text = ""

"""Definitions shared by the TOON encoder and decoder."""

from __future__ import annotations

__all__ = ["DELIMITERS", "ToonDecodeError", "check_indent"]

DELIMITERS = (",", "\t", "|")


class ToonDecodeError(ValueError):
    """A TOON document could not be decoded. ``line`` is 1-based (or None)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)

    def __reduce__(self) -> tuple[type[ToonDecodeError], tuple[str, int | None]]:
        return type(self), (self.reason, self.line)


def check_indent(indent: int) -> int:
    if isinstance(indent, bool) or not isinstance(indent, int):
        raise TypeError(f"indent must be an int, not {type(indent).__name__}")
    if indent < 1:
        raise ValueError(f"indent must be at least 1, got {indent}")
    return indent

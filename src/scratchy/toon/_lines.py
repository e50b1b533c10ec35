"""Line splitting for the TOON decoder: contents, depths, line numbers, blank lines."""

from __future__ import annotations

import re
from itertools import repeat
from operator import itemgetter

from ._common import ToonDecodeError

__all__ = ["split_lines"]

_LINE_BREAK = re.compile("\n( *)")


def split_lines(
    text: str, indent: int, strict: bool
) -> tuple[list[str], list[int], list[int] | None, dict[int, int]]:
    """Split into (contents, depths, line numbers or None, blank-line map).

    The fast path splits once on newline-plus-indentation, so each line's content and
    indentation come out of one C call. Documents with CR, tabs before content,
    comments, blank lines or (strict) uneven indentation take the slow path.
    """
    if "\r" not in text:
        parts = _LINE_BREAK.split(text)
        body = parts[0::2]
        pads = parts[1::2]
        if body[-1] == "" and pads and pads[-1] == "":  # a final newline
            body.pop()
            pads.pop()
        first = body[0]
        body[0] = first.lstrip(" ")
        pads.insert(0, first[: len(first) - len(body[0])])
        if "" not in body:
            firsts = "".join(map(itemgetter(0), body))
            if "#" not in firsts and "\t" not in firsts:  # no comment or tab-indented line
                if " " in "".join(map(itemgetter(-1), body)):
                    body = list(map(str.rstrip, body, repeat(" ")))
                try:
                    depths = list(map(_Levels(indent, strict).__getitem__, pads))
                except _UnevenIndent:
                    pass  # the slow path reports the line
                else:
                    return body, depths, None, {}
    raw = text.split("\n")
    if raw[-1] == "":
        raw.pop()
    return _prepare_slow(raw, indent, strict)


class _UnevenIndent(Exception):
    pass


class _Levels(dict[str, int]):
    """Depth of an indentation string, computed once per distinct indentation."""

    def __init__(self, indent: int, strict: bool) -> None:
        super().__init__()
        self.indent = indent
        self.strict = strict

    def __missing__(self, pad: str) -> int:
        if self.strict and len(pad) % self.indent:
            raise _UnevenIndent
        depth = self[pad] = len(pad) // self.indent
        return depth


def _prepare_slow(
    raw: list[str], indent: int, strict: bool
) -> tuple[list[str], list[int], list[int] | None, dict[int, int]]:
    contents: list[str] = []
    depths: list[int] = []
    numbers: list[int] = []
    blanks: dict[int, int] = {}
    blank = 0
    for number, source in enumerate(raw, 1):
        if source.endswith("\r"):
            source = source[:-1]
        stripped = source.lstrip(" ")
        if stripped.startswith("#"):
            continue  # comment line
        content = stripped.rstrip(" ")
        if not content or (not strict and not content.strip(" \t")):
            blank = blank or number
            continue
        spaces = len(source) - len(stripped)
        if content[0] == "\t":
            if strict:
                raise ToonDecodeError("Tabs are not allowed in indentation", number)
            run = len(content) - len(content.lstrip(" \t"))
            spaces += content.count(" ", 0, run)
            depth = content.count("\t", 0, run) + spaces // indent
            content = content[run:]
        else:
            if strict and spaces % indent:
                raise ToonDecodeError(
                    f"Indentation of {spaces} spaces is not a multiple of {indent}", number
                )
            depth = spaces // indent
        if blank and strict:
            blanks[len(contents)] = blank
        blank = 0
        contents.append(content)
        depths.append(depth)
        numbers.append(number)
    return contents, depths, numbers, blanks

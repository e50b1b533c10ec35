"""Search text shared by every store's index: what is indexed, how a query is split, snippets.

Chinese, Japanese and Korean text has no spaces between words, so word tokenizers (SQLite
FTS5's ``unicode61``, PostgreSQL's ``simple``) would index a whole sentence as one token. Each
such character is indexed as a token of its own instead, and a query's CJK run becomes a phrase
of single characters: ``都市`` matches inside ``東京は大きい都市です``.
"""

from __future__ import annotations

import re
import unicodedata

from ..messages import Message, text_of

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK_CLASS = (  # CJK radicals, kana, bopomofo, ideographs, hangul, half-width katakana
    "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    "\uf900-\ufaff\uff66-\uff9f"
)
_CJK = re.compile(f"([{_CJK_CLASS}])")
_CJK_GAP = re.compile(f"(?<=[{_CJK_CLASS}\\[\\]]) +(?=[{_CJK_CLASS}\\[\\]])")


def split_cjk(text: str) -> str:
    """Put a space around each Chinese, Japanese or Korean character, so that word tokenizers
    (FTS5 ``unicode61``, PostgreSQL ``simple``) index each one: ``都市`` is then found as the
    phrase ``都 市`` inside ``東京は大きい都市です``."""
    if text.isascii():
        return text
    return _CJK.sub(r" \1 ", text)


def join_cjk(snippet: str) -> str:
    """Undo :func:`split_cjk` in a snippet shown to people."""
    if snippet.isascii():
        return snippet
    return re.sub(" {2,}", " ", _CJK_GAP.sub("", snippet)).strip()


def query_terms(query: str) -> list[list[str]]:
    """The terms of a search query: each a phrase (list of words); CJK runs become phrases of
    single characters. Every term must match; the last word is a prefix."""
    terms: list[list[str]] = []
    for word in _WORD.findall(query):
        parts = _WORD.findall(split_cjk(word))
        if parts:
            terms.append(parts)
    return terms


def search_text(message: Message) -> str:
    """The searchable text of a message: content and tool calls (NULs removed, CJK split)."""
    parts = [text_of(message)]
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    text = "\n".join(p for p in parts if p).replace("\x00", " ")
    if not text.isascii():
        text = split_cjk(text.encode("utf-8", "replace").decode("utf-8"))
    return text


def fold(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (as SQLite's ``remove_diacritics``)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fts5_query(terms: list[list[str]]) -> str:
    """An FTS5 MATCH expression: every term (a quoted phrase), the last word as a prefix."""
    out = []
    for i, phrase in enumerate(terms):
        quoted = '"' + " ".join(w.replace('"', '""') for w in phrase) + '"'
        if i == len(terms) - 1 and len(phrase) == 1 and not _CJK.fullmatch(phrase[0]):
            quoted += "*"
        out.append(quoted)
    return " ".join(out)

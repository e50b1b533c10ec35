"""The optional compiled decoder of session files (``toons``, ``scratchy[fast]``) against the
pure-Python codec: equal values for every session Scratchy writes, the same errors (line and
reason) for damaged ones, and the store working with the accelerator off."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchy import SessionManager
from scratchy import toon as pure
from scratchy.errors import SessionCorruptedError
from scratchy.stores import _toon_accel as accel
from scratchy.stores._toon_layout import encode_header, encode_message
from scratchy.stores.toon_files import TOONFileStore
from tests.test_toon_properties import json_values, message, text

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

big_ints = st.integers(min_value=-(2**80), max_value=2**80)
loose = st.one_of(
    json_values,
    big_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["-0", "1e5", "05", " lead", "trail ", "a: b", "x,y", '"', "[1]{a}:"]),
)
args = st.dictionaries(text, loose, max_size=4)
odd_message = st.one_of(
    message,
    st.fixed_dictionaries(  # nested tool-call arguments as objects, not only JSON strings
        {
            "role": st.just("assistant"),
            "content": st.one_of(st.none(), text),
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {
                        "id": text,
                        "type": st.just("function"),
                        "function": st.fixed_dictionaries({"name": text, "arguments": args}),
                    }
                ),
                min_size=1,
                max_size=3,
            ),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "tool"]), "content": text}, optional={"extra": loose}
    ),
)
metadata = st.dictionaries(
    st.one_of(text, st.sampled_from(["usage", "cost", "tags"])), loose, max_size=4
)


def session_text(title: str, meta: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """A session file as :meth:`TOONFileStore._write` writes it."""
    fields: dict[str, Any] = {
        "format": "scratchy-session/1",
        "session_id": "s",
        "title": title,
        "created_at": "2025-11-22T20:30:15.123456+00:00",
        "updated_at": "2025-11-22T20:35:42.654321+00:00",
    }
    if meta:
        fields["metadata"] = meta
    body = "\n".join(encode_message(m) for m in messages)
    return encode_header(fields) + f"\nmessages[{len(messages)}]:" + ("\n" + body if body else "")


def identical(a: Any, b: Any) -> bool:
    """Equal values of the same types, dict keys in the same order, -0.0 apart from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(identical, a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def outcome(fn: Any, doc: str) -> tuple[str, Any]:
    try:
        return "ok", fn(doc)
    except pure.ToonDecodeError as exc:
        return "error", (exc.line, exc.reason)


@pytest.fixture(autouse=True)
def _accelerator_state() -> Any:
    saved = accel.ENABLED
    yield
    accel.ENABLED = saved


def test_toons_is_used_for_the_sessions_scratchy_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRATCHY_TOON_ACCELERATOR", raising=False)
    accel.ENABLED = None
    assert accel.accelerated(), "toons is in the test extra: install scratchy[test]"
    calls = []
    real = accel._toons.loads
    monkeypatch.setattr(accel._toons, "loads", lambda s: calls.append(1) or real(s))
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    msgs = [
        {"role": "user", "content": "hi, 1e5: [1]"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "f", "content": "x\n\ty  "},
    ]
    doc = session_text("T", {"usage": {"input_tokens": 3}}, msgs)
    assert identical(accel.decode_session(doc), pure.loads(doc))
    assert calls == [1]


@SETTINGS
@given(text, metadata, st.lists(odd_message, max_size=8))
def test_both_decoders_agree_on_every_session_we_write(
    title: str, meta: dict[str, Any], messages: list[dict[str, Any]]
) -> None:
    doc = session_text(title, meta, messages)
    accel.ENABLED = None
    expected = pure.loads(doc)
    assert identical(accel.decode_session(doc), expected)
    assert not doc.endswith((" ", "\n")) and "\t" not in doc and "\n\n" not in doc


EDITS = [" ", "\n", "\n  ", "\n \n", "\t[", "\n    ", ",", ":", '"', "\\", "-", "- ", "\t",
         "|", "\r", "1", "[", "]", "{", "}", "#", "x", "0", "e", ".", "é", "\u2028", " {", "{a}",
         "[2]"]  # fmt: skip


@SETTINGS
@given(text, metadata, st.lists(odd_message, min_size=1, max_size=5), st.data())
def test_damaged_sessions_get_the_pure_decoders_error(
    title: str, meta: dict[str, Any], messages: list[dict[str, Any]], data: st.DataObject
) -> None:
    doc = session_text(title, meta, messages)
    for _ in range(data.draw(st.integers(1, 3))):
        lines = doc.split("\n")
        kind = data.draw(st.sampled_from(["delete", "insert", "replace", "dup", "drop"]))
        at = data.draw(st.integers(0, len(doc)))
        row = data.draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            doc = doc[:at] + doc[at + 1 :]
        elif kind in ("insert", "replace"):
            edit = data.draw(st.sampled_from(EDITS))
            doc = doc[:at] + edit + doc[at + (kind == "replace") :]
        elif kind == "dup":
            doc = "\n".join(lines[: row + 1] + lines[row:])
        elif len(lines) > 1:
            doc = "\n".join(lines[:row] + lines[row + 1 :])
    accel.ENABLED = None
    ours, fast = outcome(pure.loads, doc), outcome(accel.decode_session, doc)
    assert ours[0] == fast[0], (doc, ours, fast)
    assert identical(fast[1], ours[1]) if ours[0] == "ok" else fast[1] == ours[1]


@pytest.mark.parametrize(
    "damage",
    [
        ("    content: ", "\n    content: "),  # a blank line inside the messages
        ("  - role: user", "  \t- role: user"),  # a tab in the indentation
        (
            "tool_calls[1]{id,type,function{name,arguments}}",
            "tool_calls[1]{id,type,function {name,arguments}}",
        ),  # fmt: skip
        ("function{name,arguments}}", 'function{name,arguments{""}a}}'),
        ("format: scratchy-session/1\n", "format: scratchy-session/1\n   "),
        ("arguments}}:\n", "arguments}}:\n   \n"),  # a blank line after a table header
        ("    tool_calls[1]", "    tool_calls\t[1]"),  # a tab between a key and its bracket
    ],
)
def test_files_toons_would_accept_are_reported_like_the_pure_decoder(
    tmp_path: Path, damage: tuple[str, str]
) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok", "tool_calls": [call]},
    ]
    store = TOONFileStore(tmp_path)
    store.replace("s", msgs)
    path = tmp_path / "s_chat.toon"
    doc = path.read_text(encoding="utf-8")
    assert damage[0] in doc
    path.write_text(doc.replace(damage[0], damage[1], 1), encoding="utf-8")
    errors = []
    for enabled in (True, False):
        accel.ENABLED = enabled
        with pytest.raises(SessionCorruptedError) as info:
            TOONFileStore(tmp_path).load("s")
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert str(path) in errors[0] and "\n" not in errors[0]


@pytest.mark.parametrize("value", ["0", "off"])
def test_the_store_works_with_the_accelerator_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SCRATCHY_TOON_ACCELERATOR", value)
    accel.ENABLED = None
    assert not accel.accelerated()
    monkeypatch.setattr(accel, "_toons", None)  # any use of toons would fail now
    manager = SessionManager(store=TOONFileStore(tmp_path))
    msgs = [{"role": "user", "content": f"n {i}: {2**70}"} for i in range(30)]
    manager.store.replace("s", msgs)
    manager.store.append("s", [{"role": "assistant", "content": "-0"}])
    loaded = TOONFileStore(tmp_path).load("s")
    assert loaded is not None
    assert [m["content"] for m in loaded.messages][-2:] == [f"n 29: {2**70}", "-0"]
    assert [s["id"] for s in manager.list_sessions()] == ["s"]


def test_importing_scratchy_does_not_import_toons(tmp_path: Path) -> None:
    code = (
        "import sys, scratchy, scratchy.stores.toon_files as t\n"
        "assert 'toons' not in sys.modules\n"
        f"s = t.TOONFileStore({str(tmp_path)!r})\n"
        "s.replace('a', [{'role': 'user', 'content': 'x'}])\n"
        "t.TOONFileStore(s.directory).load('a')\n"
        "print(json.dumps('toons' in sys.modules))\n"
    )
    env = {**os.environ, "SCRATCHY_TOON_ACCELERATOR": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) is True  # imported at the first decode

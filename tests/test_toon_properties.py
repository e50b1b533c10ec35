"""Property tests for ``scratchy.toon`` against the reference ``toon_format``, plus errors.

Floats are canonicalized by the spec: integral values below 1e21 are written as integers
(``1e20`` -> ``100000000000000000000``, ``-0.0`` -> ``0``) and decode as ``int``, so the
expected value of a round trip is :func:`canonical` of the input.
"""

from __future__ import annotations

import datetime
import enum
import json
from typing import Any

import pytest
import toon_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchy.toon import ToonDecodeError, dumps, loads

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRICKY = [
    "", "true", "false", "null", "42", "-1.5e3", "05", "+1", ".5", "1e5", "-", "- x", "-x",
    "#", "#tag", "a:b", "a,b", "a|b", "a\tb", " lead", "trail ", '"q"', "[1]", "{a}", "[]",
    "\\", "\\n", "line\nbreak", "cr\r\nlf", "\x00\x08\x0c\x1f", "\x7f", "é", "日本", "😀",
    "\u2028", "\ufeffbom", "key: value", "x[2]: y", "tool_calls[1]{id}:",
]  # fmt: skip
text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(TRICKY),
    st.text(alphabet=' :-,|"\\[]{}#\t\nab01.e', max_size=10),
)
keys = st.one_of(text, st.sampled_from(["id", "type", "name", "a.b", "_x", "content"]))
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e20, 1e21, 1.5e-7, 2.0**53, 5e-324, 1e308, -1e-6]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)


def _uniform_objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Lists of objects with the same keys: these encode as tables."""
    names = st.lists(st.sampled_from(["id", "type", "name", "a b"]), min_size=1, max_size=3)
    return names.flatmap(
        lambda ks: st.lists(
            st.fixed_dictionaries({k: children for k in ks}), min_size=1, max_size=4
        )
    )


json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
        _uniform_objects(children),
        _uniform_objects(scalars),
    ),
    max_leaves=25,
)
options = st.fixed_dictionaries(
    {"delimiter": st.sampled_from([",", "\t", "|"]), "indent": st.sampled_from([1, 2, 4])}
)

content = st.one_of(
    st.none(),
    text,
    st.text(min_size=20, max_size=200),
    st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": text}), min_size=1, max_size=3
    ),
)
tool_call = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"call_[A-Za-z0-9]{1,12}", fullmatch=True),
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {
                "name": st.sampled_from(["read_file", "run_command", "search"]),
                "arguments": json_values.map(json.dumps),
            }
        ),
    }
)
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]), "content": content}),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": content},
        optional={"tool_calls": st.lists(tool_call, min_size=1, max_size=3)},
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": text, "name": text, "content": content}
    ),
)
sessions = st.fixed_dictionaries(
    {
        "format": st.just("scratchy-session/1"),
        "session_id": st.from_regex(r"[0-9A-Z]{6,26}", fullmatch=True),
        "title": text,
        "created_at": st.just("2025-01-01T00:00:00Z"),
        "updated_at": st.just("2025-01-02T12:30:00.123Z"),
        "messages": st.lists(message, max_size=8),
    }
)


def canonical(value: Any) -> Any:
    """What a value decodes to after TOON's number canonicalization."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


def same(actual: Any, expected: Any) -> bool:
    """Equality that also compares types (so 1 != 1.0 and True != 1).

    Key order is not compared: a table takes its column order from its first row.
    """
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[k], expected[k]) for k in actual
        )
    return bool(actual == expected)


@SETTINGS
@given(json_values, options)
def test_round_trip(value: Any, opts: dict[str, Any]) -> None:
    text = dumps(value, **opts)
    assert same(loads(text, indent=opts["indent"]), canonical(value))


@SETTINGS
@given(json_values, options)
def test_reference_reads_our_output_and_we_read_its(value: Any, opts: dict[str, Any]) -> None:
    ours = dumps(value, **opts)
    ref_opts = {"indent_size": opts["indent"], "delimiter": opts["delimiter"]}
    theirs = toon_format.encode(value, **ref_opts)
    assert same(toon_format.decode(ours, indent_size=opts["indent"]), canonical(value))
    assert same(loads(theirs, indent=opts["indent"]), canonical(value))
    assert ours == theirs  # byte-identical output


@SETTINGS
@given(sessions)
def test_session_round_trip(session: dict[str, Any]) -> None:
    text = dumps(session)
    assert same(loads(text), canonical(session))
    assert same(toon_format.decode(text), canonical(session))
    assert text == toon_format.encode(session)
    assert dumps(session) == text  # deterministic
    for msg in session["messages"]:
        single = dumps({"messages": [msg]})
        assert same(loads(single), canonical({"messages": [msg]}))


def test_session_shapes() -> None:
    """Non-uniform messages are list items; uniform primitive objects are a table."""
    session = {
        "format": "scratchy-session/1",
        "messages": [
            {"role": "user", "content": "Hi,\nthere"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "read_file", "content": "x = 1"},
            {"role": "user", "content": [{"type": "text", "text": "look"}]},
        ],
    }
    assert dumps(session) == (
        "format: scratchy-session/1\n"
        "messages[4]:\n"
        '  - role: user\n    content: "Hi,\\nthere"\n'
        "  - role: assistant\n    content: null\n"
        "    tool_calls[1]{id,type,function{name,arguments}}:\n"
        '      call_1,function,read_file,"{\\"path\\": \\"a.py\\"}"\n'
        "  - role: tool\n    tool_call_id: call_1\n    name: read_file\n    content: x = 1\n"
        "  - role: user\n    content[1]{type,text}:\n      text,look"
    )
    assert loads(dumps(session)) == session
    uniform = {
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    }
    assert dumps(uniform) == "messages[2]{role,content}:\n  user,a\n  assistant,b"
    assert dumps({"messages": [{"role": "user", "content": "hi"}]}) == (
        "messages[1]{role,content}:\n  user,hi"
    )


def test_non_json_values_are_normalized_like_the_reference() -> None:
    class Color(enum.Enum):
        RED = "red"

    value = {
        1: (1, 2),
        "when": datetime.date(2025, 1, 2),
        "color": Color.RED,
        "tags": {"b", "a"},
        "nan": float("nan"),
    }
    assert dumps(value) == toon_format.encode(value)
    assert loads(dumps(value)) == {
        "1": [1, 2],
        "when": "2025-01-02",
        "color": "red",
        "tags": ["a", "b"],
        "nan": None,
    }


def test_encode_errors() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        dumps(loop)
    with pytest.raises(TypeError):
        dumps({"x": object()})
    with pytest.raises(ValueError):
        dumps({"x": "\ud800"})
    with pytest.raises(ValueError):
        dumps({"x": 1}, delimiter=";")
    with pytest.raises(ValueError):
        dumps({"x": 1}, indent=0)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a:\n   b: 1", 2, "Indentation of 3 spaces is not a multiple of 2"),
        ("a:\n\tb: 1", 2, "Tabs are not allowed in indentation"),
        ("x: 1\nitems[3]: a,b", 2, "Declared length 3 but found 2"),
        ("rows[2]{a,b}:\n  1,2", 1, "Declared length 2 but found 1"),
        ("rows[1]{a,b}:\n  1,2,3", 2, "Expected 2 values but found 3"),
        ("a: 1\nb: 2\na: 3", 3, "Duplicate key 'a'"),
        ("items[2]:\n  - a\n\n  - b", 3, "Blank line inside an array or keyed object"),
        ('a: ok\nb: "bad \\q escape"', 2, "Invalid escape"),
        ('a: "unterminated', 1, "Unterminated string"),
        ("a:\n  b: 1\n    c: 2", 3, "Unexpected indentation"),
        ("key[]: 1,2", 1, "Malformed bracket segment"),
    ],
)
def test_decode_errors(text: str, line: int, reason: str) -> None:
    with pytest.raises(ToonDecodeError) as info:
        loads(text)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.line == line
    assert error.reason.startswith(reason)
    assert str(error) == f"line {line}: {error.reason}"
    with pytest.raises(toon_format.ToonDecodeError) as ref:
        toon_format.decode(text)
    assert ref.value.line == line  # same line as the reference decoder


def test_non_strict_decoding() -> None:
    assert loads("items[3]: a,b", strict=False) == {"items": ["a", "b"]}
    assert loads("a: 1\na: 2", strict=False) == {"a": 2}
    assert loads("a:\n\tb: 1", strict=False) == {"a": {"b": 1}}
    assert loads("items[2]:\n  - a\n\n  - b", strict=False) == {"items": ["a", "b"]}


def test_decode_details() -> None:
    assert loads("") == {}
    assert loads("a: 1\n") == {"a": 1}  # a trailing newline is fine
    assert loads("\ufeff# comment\r\na: -0\r\nb: 1e2\r\n") == {"a": 0, "b": 100.0}
    assert loads(b"a: \xc3\xa9") == {"a": "é"}
    assert loads("a:\n    b: 1", indent=4) == {"a": {"b": 1}}
    assert loads('a: "\\u00e9"') == {"a": "é"}
    with pytest.raises(ToonDecodeError):
        loads('a: "\\ud83d\\ude00"')  # surrogate escapes are not TOON
    with pytest.raises(ToonDecodeError):
        loads('a: "x\\/y"')  # a JSON-only escape

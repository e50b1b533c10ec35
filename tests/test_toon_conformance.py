"""TOON conformance: one test per case of the toon-format/spec fixtures.

The fixtures are vendored in ``tests/fixtures/toon-spec/`` (see its README.txt for the spec
commit and version, and LICENSE); ``SCRATCHY_TOON_FIXTURES`` may name another copy, e.g. a newer
spec checkout. A missing folder is a failure, not a skip: without it this file would silently
test nothing.

``scratchy.toon`` follows spec 4.4. The fixture suite is the spec 4.0 one, which has 4
optional non-strict cases where a malformed header falls back to a literal key
(``key[]: 1,2`` -> ``{"key[]": "1,2"}``); spec 4.4 (and both reference implementations)
reject those, and so do we: those 4 cases assert a ``ToonDecodeError`` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from scratchy.toon import ToonDecodeError, dumps, loads


def _fixtures_dir() -> Path:
    override = os.environ.get("SCRATCHY_TOON_FIXTURES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "fixtures" / "toon-spec"


FIXTURES = _fixtures_dir()
EXPECTED_COUNTS = {"encode": 173, "decode": 343}

# Cases of the spec 4.0 suite that spec 4.4 turned into errors (see the module docstring).
SPEC_44_REJECTS = {
    "decode/objects.json::treats extra brackets after valid array segment as literal key "
    "(non-strict)",
    "decode/objects.json::treats bracket segment without a length as literal key (non-strict)",
    "decode/objects.json::treats non-integer bracket content as literal key (non-strict)",
    "decode/objects.json::treats text between bracket segment and colon as literal key "
    "(non-strict)",
}


def _cases() -> list[Any]:
    if not FIXTURES.is_dir():
        return [pytest.param(None, None, None, id="fixtures-missing")]
    cases = []
    for kind in ("encode", "decode"):
        for path in sorted((FIXTURES / kind).glob("*.json")):
            for case in json.loads(path.read_text(encoding="utf-8"))["tests"]:
                case_id = f"{kind}/{path.name}::{case['name']}"
                cases.append(pytest.param(kind, path.name, case, id=case_id))
    return cases


CASES = _cases()


def _require_fixtures() -> None:
    if not FIXTURES.is_dir():
        pytest.fail(
            f"TOON conformance fixtures not found at {FIXTURES}; "
            "set SCRATCHY_TOON_FIXTURES to the folder holding encode/ and decode/"
        )


def _same(actual: Any, expected: Any) -> bool:
    """JSON-model equality: numbers by value (1000.0 == 1000), but True is not 1."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and list(actual) == list(expected)
            and all(_same(actual[k], expected[k]) for k in expected)
        )
    return type(actual) is type(expected) and actual == expected


def test_fixture_counts() -> None:
    _require_fixtures()
    counts = {"encode": 0, "decode": 0}
    for param in CASES:
        counts[param.values[0]] += 1
    assert counts == EXPECTED_COUNTS
    ids = {param.id for param in CASES}
    assert SPEC_44_REJECTS <= ids


@pytest.mark.parametrize(("kind", "filename", "case"), CASES)
def test_fixture(kind: str | None, filename: str | None, case: dict[str, Any] | None) -> None:
    _require_fixtures()
    assert kind is not None and case is not None
    options = case.get("options") or {}
    if kind == "encode":
        text = dumps(
            case["input"],
            indent=options.get("indentSize", 2),
            delimiter=options.get("delimiter", ","),
        )
        assert text == case["expected"]
        return

    def decode() -> Any:
        return loads(
            case["input"],
            indent=options.get("indentSize", 2),
            strict=options.get("strict", True),
        )

    if case.get("shouldError") or f"decode/{filename}::{case['name']}" in SPEC_44_REJECTS:
        with pytest.raises(ToonDecodeError) as info:
            decode()
        assert info.value.line is None or info.value.line >= 1
        assert str(info.value).startswith(f"line {info.value.line}: ")
        return
    result = decode()
    assert _same(result, case["expected"]), (result, case["expected"])


def test_spec_44_rejects_malformed_headers_even_when_not_strict() -> None:
    """The 4 fixture cases that spec 4.0 accepted as literal keys, asserted explicitly."""
    for text in ("foo[1][bar]: 10", "key[]: 1,2", "foo[bar][1]: 20", "foo[2]extra: a,b"):
        for strict in (True, False):
            with pytest.raises(ToonDecodeError) as info:
                loads(text, strict=strict)
            assert info.value.line == 1

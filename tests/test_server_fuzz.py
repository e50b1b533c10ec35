"""No request makes ``scratchy serve`` answer 500 or a non-JSON error: a Hypothesis fuzzer sends
random methods, paths (ids with traversal, NUL, unicode, percent-escapes), query strings,
headers and bodies to every route of ``/openapi.json`` of a real server process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server_helpers import KEYS, ServerProc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    proc = ServerProc(tmp_path_factory.mktemp("fuzz"), "--model", "fake:", workers=2)
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def http(server: ServerProc) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


IDS = st.one_of(
    st.sampled_from(
        [
            "s1",
            "fuzz_a",
            "..",
            "../..",
            "..%2F..",
            "%00",
            "a%00b",
            ".x",
            "con",
            "x" * 129,
            "%2e%2e",
            "é",
            "a/b",
            "",
            " ",
        ]
    ),  # fmt: skip
    st.text(min_size=1, max_size=20).map(lambda t: quote(t, safe="")),
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "input",
            "stream",
            "if_busy",
            "id",
            "title",
            "metadata",
            "new_id",
            "at",
            "messages",
            "model",
            "x",
        ]
    ),  # fmt: skip
    JSONISH,
    max_size=4,
)


def routes(server: ServerProc) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


@pytest.fixture(scope="module")
def known(server: ServerProc) -> list[tuple[str, str]]:
    found = routes(server)
    assert len(found) >= 14
    return found


def test_fuzz_no_route_answers_500(http: httpx.Client, known: list[tuple[str, str]]) -> None:
    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        route=st.sampled_from(known),
        method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", None]),
        sid=IDS,
        query=st.dictionaries(
            st.sampled_from(["limit", "cursor", "q", "offset", "format"]),
            st.text(max_size=12),
            max_size=3,
        ),
        body=st.one_of(FIELDS, JSONISH, st.binary(max_size=50)),
        key=st.sampled_from([KEYS["alice"], KEYS["bob"], "wrong", None]),
        extra=st.dictionaries(
            st.sampled_from(["Idempotency-Key", "X-Session-Id", "Accept", "Content-Type"]),
            st.sampled_from(["", "k1", "text/event-stream", "application/json", "../x", "a" * 300]),
            max_size=2,
        ),
    )
    def check(route, method, sid, query, body, key, extra) -> None:  # type: ignore[no-untyped-def]
        path = route[1].replace("{session_id}", sid)
        headers = dict(extra)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if isinstance(body, bytes):
            content = body
        else:
            content = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            answer = http.request(
                method or route[0], path, params=query, content=content, headers=headers
            )
        except httpx.InvalidURL:
            return  # the client refuses to send it at all
        assert answer.status_code < 500 or answer.status_code in (502, 503), (
            path,
            answer.status_code,
            answer.text[:300],
        )
        if answer.status_code >= 400:
            error = answer.json()["error"]
            assert set(error) == {"code", "message"} and error["message"]

    check()

"""``scratchy sessions migrate``: TOON directory -> SQLite -> PostgreSQL -> Redis -> TOON."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scratchy.cli.main import cli
from scratchy.sessions import SessionManager
from tests.test_store_contract import TRICKY, drop_pg_schema, drop_redis_prefix


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sessions", "migrate", *args], catch_exceptions=False)


@pytest.fixture
def urls(redis_url: str, postgres_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    yield {
        "sqlite": f"sqlite:///{tmp_path}/m.db",
        "postgres": f"{postgres_url}?schema=mig_{tag}&pool_size=2",
        "redis": f"{redis_url}?prefix=mig-{tag}:",
    }
    drop_redis_prefix(redis_url, f"mig-{tag}:")
    drop_pg_schema(postgres_url, f"mig_{tag}")


def _fill(directory: Path) -> dict[str, list[dict]]:
    sm = SessionManager(directory)
    sessions = {
        "tricky": TRICKY,
        "empty": [],
        "code_review_auth_module": [
            {"role": "user", "content": f"question {i}"} for i in range(120)
        ],
    }
    for sid, msgs in sessions.items():
        sm.save_session(sid, msgs, metadata={"origin": sid})
    return sessions


def _contents(location: str) -> dict[str, list[dict]]:
    sm = SessionManager(location)
    return {row["id"]: sm.load_session(row["id"]) or [] for row in sm.list_sessions()}


def test_round_trip_through_every_backend(tmp_path: Path, urls: dict[str, str]) -> None:
    src = tmp_path / "toon_src"
    expected = _fill(src)
    chain = [str(src), urls["sqlite"], urls["postgres"], urls["redis"], str(tmp_path / "back")]
    for a, b in zip(chain, chain[1:], strict=False):
        result = run("--from", a, "--to", b)
        assert result.exit_code == 0, result.output
        lines = [ln for ln in result.output.splitlines() if ln.startswith("[")]
        assert len(lines) == 3
        assert all(re.fullmatch(r"\[\d/3\] copied '[\w.-]+' \(\d+ messages\)", ln) for ln in lines)
        assert "[3/3]" in result.output and "3 copied" in result.output
        assert _contents(b) == expected
        assert _contents(a) == expected  # the source is never changed
    created = {i.id: i.created_at for i in SessionManager(urls["sqlite"]).store.list()}
    for url in (urls["postgres"], urls["redis"]):
        store = SessionManager(url).store
        assert {i.id: i.created_at for i in store.list()} == created
        assert store.info("tricky").metadata == {"origin": "tricky"}  # type: ignore[union-attr]
    # running it again finds everything already there
    again = run("--from", urls["sqlite"], "--to", urls["redis"])
    assert again.exit_code == 0 and "3 already there" in again.output


def test_mismatch_exits_non_zero_and_force_overwrites(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", f"sqlite:///{tmp_path}/dst.db"
    expected = _fill(src)
    SessionManager(dst).save_session("tricky", [{"role": "user", "content": "something else"}])
    result = run("--from", str(src), "--to", dst)
    assert result.exit_code == 1
    assert "FAILED 'tricky'" in result.output and "--force" in result.output
    assert SessionManager(dst).load_session("tricky") == [
        {"role": "user", "content": "something else"}
    ]
    assert _contents(str(src)) == expected
    forced = run("--from", str(src), "--to", dst, "--force")
    assert forced.exit_code == 0, forced.output
    assert _contents(dst) == expected


def test_unreadable_source_session_exits_non_zero(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _fill(src)
    (src / "broken_chat.toon").write_text("format: scratchy-session/1\nmessages[2]:\n  - oops\n")
    result = run("--from", str(src), "--to", f"sqlite:///{tmp_path}/d.db")
    assert result.exit_code == 1
    assert "FAILED 'broken'" in result.output
    assert "3 copied" in result.output
    assert (src / "broken_chat.toon").exists()


def test_same_store_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/same.db"
    result = run("--from", url, "--to", url)
    assert result.exit_code != 0 and "same store" in result.output

"""``scratchy sessions migrate --from SRC --to DST``: copy every session between stores.

SRC and DST are a session directory (TOON files) or a store URL (``sqlite:///...``,
``redis://...``, ``postgresql://...``). Each session's messages and metadata are copied and
read back to check them; its creation time is kept when the destination store accepts it (the
database stores do; the TOON file store stamps the time of the copy). Nothing is deleted from
the source, and the trash is not copied.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from ..errors import ScratchyError
from ..stores.base import SessionStore

__all__ = ["CopyReport", "copy_sessions", "migrate"]


@dataclass(slots=True)
class CopyReport:
    """What :func:`copy_sessions` did."""

    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """Already in the destination with the same messages."""
    problems: list[str] = field(default_factory=list)
    """One line per session that could not be copied or did not read back equal."""


def _accepts_created_at(store: SessionStore) -> bool:
    try:
        return "created_at" in inspect.signature(store.replace).parameters
    except (TypeError, ValueError):
        return False


def copy_sessions(
    source: SessionStore,
    dest: SessionStore,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> CopyReport:
    """Copy every live session from ``source`` to ``dest`` and verify each copy.

    Args:
        source: The store to read (never written).
        dest: The store to write.
        force: Overwrite sessions that exist in ``dest`` with other messages (otherwise they
            are reported as problems and left alone).
        echo: Receives one progress line per session.

    Returns:
        The ids copied, those already equal, and the problems found.
    """
    report = CopyReport()
    infos = source.list()
    total = len(infos)
    keep_created = _accepts_created_at(dest)
    for n, info in enumerate(sorted(infos, key=lambda i: i.created_at), 1):
        sid = info.id
        where = f"[{n}/{total}]"
        try:
            if info.error is not None:
                raise ScratchyError(f"cannot be read: {info.error}")
            stored = source.load(sid)
            if stored is None:
                echo(f"{where} skipped '{sid}' (deleted from the source meanwhile)")
                continue
            messages = stored.messages
            existing = dest.load(sid) if dest.exists(sid) else None
            if existing is not None and existing.messages == messages:
                report.unchanged.append(sid)
                echo(f"{where} already there '{sid}' ({len(messages)} messages)")
                continue
            if existing is not None and not force:
                raise ScratchyError(
                    f"exists in the destination with other messages ({len(existing.messages)} "
                    "there); pass --force to overwrite it"
                )
            kwargs: dict = {"force": True, "metadata": dict(stored.info.metadata)}
            if keep_created:
                kwargs["created_at"] = stored.info.created_at
            dest.replace(sid, messages, **kwargs)
            back = dest.load(sid)
            if back is None or back.messages != messages:
                got = "nothing" if back is None else f"{len(back.messages)} different messages"
                raise ScratchyError(f"read back {got} instead of {len(messages)} messages")
            if back.info.message_count != len(messages):
                raise ScratchyError(
                    f"the destination counts {back.info.message_count} messages, not "
                    f"{len(messages)}"
                )
        except ScratchyError as exc:
            report.problems.append(f"'{sid}': {exc}")
            echo(f"{where} FAILED '{sid}': {exc}")
            continue
        report.copied.append(sid)
        echo(f"{where} copied '{sid}' ({len(messages)} messages)")
    return report


@click.command("migrate")
@click.option("--from", "source", required=True, help="Session directory or store URL to read.")
@click.option("--to", "dest", required=True, help="Session directory or store URL to write.")
@click.option(
    "--force", is_flag=True, help="Overwrite destination sessions that hold other messages."
)
def migrate(source: str, dest: str, force: bool) -> None:
    """Copy every session from one store to another (the source is left as it is).

    Each copy is read back and compared; the command exits with status 1 if any session could
    not be copied exactly. Example:

        scratchy sessions migrate --from scratchy/session_history --to sqlite:///sessions.db
    """
    from ..sessions import open_store
    from .sessions_cmd import _missing_store, cli_message

    if source.rstrip("/") == dest.rstrip("/"):
        raise click.ClickException("--from and --to name the same store")
    problem = _missing_store(source)
    if problem is not None:
        raise click.ClickException(f"--from: {problem}; nothing was copied")
    try:
        src = open_store(source)
        dst = open_store(dest)
    except ScratchyError as exc:
        raise click.ClickException(cli_message(exc)) from None
    if src.location == dst.location:
        raise click.ClickException("--from and --to name the same store")
    try:
        report = copy_sessions(
            src, dst, force=force, echo=lambda line: click.echo(cli_message(line))
        )
    except ScratchyError as exc:
        raise click.ClickException(cli_message(exc)) from None
    summary = (
        f"{len(report.copied)} copied, {len(report.unchanged)} already there, "
        f"{len(report.problems)} failed: {src.location} -> {dst.location} (source unchanged)"
    )
    if report.problems:
        click.echo(summary, err=True)
        for line in report.problems:
            click.echo(f"  {cli_message(line)}", err=True)
        sys.exit(1)
    click.echo(summary)

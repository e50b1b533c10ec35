"""``scratchy sessions list|show|export|import|rm``."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click


def _manager(directory: str | None):  # type: ignore[no-untyped-def]
    from ..sessions import SessionManager

    return SessionManager(directory)


_dir_option = click.option(
    "--dir",
    "directory",
    default=None,
    help="Session directory or store URL (default: scratchy/session_history).",
)


@click.group()
def sessions() -> None:
    """List, show, export, import and delete stored sessions."""


@sessions.command("list")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(directory: str | None, as_json: bool) -> None:
    """List sessions, newest activity first."""
    rows = _manager(directory).list_sessions()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No sessions yet. Start one with: scratchy chat -s NAME")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("Title", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("Messages", justify="right", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    table.add_column("Last activity", no_wrap=True)
    for r in rows:
        count = "[red]corrupted[/red]" if r["corrupted"] else str(r["message_count"])
        table.add_row(
            escape(r["id"]),
            escape(r["title"] or ""),
            count,
            r["created_at"].replace("T", " ")[:16],
            r["updated_at"].replace("T", " ")[:16],
        )
    Console(soft_wrap=True).print(table)


@sessions.command()
@click.argument("session_id")
@_dir_option
@click.option("-n", "--last", default=0, type=int, help="Show only the last N messages.")
def show(session_id: str, directory: str | None, last: int) -> None:
    """Show a session's header and messages."""
    sm = _manager(directory)
    info = sm.session_info(session_id)
    if info is None:
        raise click.ClickException(f"No session '{session_id}'. See: scratchy sessions list")
    if info.error:
        raise click.ClickException(info.error)
    messages = sm.load_session(session_id) or []
    d = info.as_dict()
    click.echo(
        f"Session: {session_id}\nTitle: {d['title']}\nMessages: {d['message_count']}\n"
        f"Created: {d['created_at'].replace('T', ' ')}\n"
        f"Last activity: {d['updated_at'].replace('T', ' ')}"
    )
    usage = info.metadata.get("usage") if info.metadata else None
    if usage:
        click.echo(
            f"Tokens: {usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
        )
    from .render import format_transcript

    click.echo()
    click.echo(format_transcript(messages[-last:] if last else messages))


@sessions.command()
@click.argument("session_id")
@_dir_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="File to write (default: stdout).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "toon", "md"]), default="json", show_default=True
)
@click.option("--redact", is_flag=True, help="Mask API keys, tokens and passwords.")
def export(
    session_id: str, directory: str | None, output: str | None, fmt: str, redact: bool
) -> None:
    """Export a session's messages as JSON (the docs' format), TOON or Markdown."""
    messages = _manager(directory).load_session(session_id)
    if messages is None:
        raise click.ClickException(f"No session '{session_id}'. See: scratchy sessions list")
    from .render import export_text

    text = export_text(messages, fmt, session_id=session_id, redact=redact)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"Exported {len(messages)} messages to {output}", err=True)
    else:
        click.echo(text)


@sessions.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--id", "session_id", required=True, help="Id of the new session.")
@_dir_option
@click.option("--force", is_flag=True, help="Overwrite an existing session.")
def import_cmd(
    file: click.utils.LazyFile, session_id: str, directory: str | None, force: bool
) -> None:
    """Import a JSON list of messages (or a TOON/JSON session file) as a session."""
    sm = _manager(directory)
    text = file.read()
    try:
        data = json.loads(text)
    except ValueError:
        from .. import toon

        try:
            data = toon.loads(text)
        except toon.ToonDecodeError as exc:
            raise click.ClickException(
                f"{file.name} is neither JSON nor TOON ({exc}); export a session with "
                "`scratchy sessions export` to see the expected format"
            ) from None
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    if sm.session_exists(session_id) and not force:
        raise click.ClickException(
            f"Session '{session_id}' already exists; choose another --id or pass --force"
        )
    info = sm.save_session(session_id, data, force=force)
    click.echo(f"Imported {info.message_count} messages into '{session_id}'")


@sessions.command("rm")
@click.argument("session_ids", nargs=-1, required=True)
@_dir_option
def rm(session_ids: tuple[str, ...], directory: str | None) -> None:
    """Delete sessions (they go to the trash; see `restore` and `purge`)."""
    sm = _manager(directory)
    missing = 0
    for sid in session_ids:
        if sm.delete_session(sid):
            undo = f"scratchy sessions restore {sid}"
            click.echo(f"Moved session '{sid}' to the trash (undo: {undo})")
        else:
            click.echo(f"No session '{sid}'", err=True)
            missing += 1
    if missing:
        sys.exit(1)


def _duration(value: str) -> timedelta:
    match = re.fullmatch(r"(\d+)\s*([dhm]?)", value.strip())
    if not match:
        raise click.BadParameter(f"{value!r}: use a number of days, or 12h / 30m / 7d")
    n, unit = int(match.group(1)), match.group(2) or "d"
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


@sessions.command()
@click.argument("query", nargs=-1, required=True)
@_dir_option
@click.option("-n", "--limit", default=20, show_default=True, help="Most hits to show.")
def search(query: tuple[str, ...], directory: str | None, limit: int) -> None:
    """Full-text search across all sessions, best match first."""
    hits = _manager(directory).search(" ".join(query), limit=limit)
    if not hits:
        click.echo("No matches.")
        sys.exit(1)
    for hit in hits:
        click.echo(f"{hit.session_id}  #{hit.index} {hit.role}: {' '.join(hit.snippet.split())}")


@sessions.command()
@_dir_option
def trash(directory: str | None) -> None:
    """List deleted sessions (restore them with `scratchy sessions restore ID`)."""
    rows = _manager(directory).list_trash()
    if not rows:
        click.echo("The trash is empty.")
    for t in rows:
        when = t.deleted_at.astimezone().strftime("%Y-%m-%d %H:%M")
        click.echo(f"{t.id}  deleted {when}  {t.message_count} messages  {t.title}")


@sessions.command()
@click.argument("session_id")
@_dir_option
def restore(session_id: str, directory: str | None) -> None:
    """Bring a deleted session back from the trash."""
    info = _manager(directory).restore_session(session_id)
    click.echo(f"Restored '{session_id}' ({info.message_count} messages)")


@sessions.command()
@click.argument("session_id", required=False)
@_dir_option
@click.option("--older-than", default=None, help="Only entries deleted before this (7d, 12h).")
@click.option("--yes", is_flag=True, help="Really delete (without it, only show what would go).")
def purge(session_id: str | None, directory: str | None, older_than: str | None, yes: bool) -> None:
    """Delete sessions in the trash for good."""
    sm = _manager(directory)
    age = _duration(older_than) if older_than else None
    if not yes:
        cutoff = None if age is None else datetime.now(UTC) - age
        doomed = [
            t
            for t in sm.list_trash()
            if (session_id is None or t.id == session_id)
            and (cutoff is None or t.deleted_at <= cutoff)
        ]
        for t in doomed:
            click.echo(f"would purge {t.id}")
        click.echo(f"{len(doomed)} sessions would be deleted for good; add --yes to do it.")
        return
    removed = sm.purge(session_id, older_than=age)
    click.echo(f"Purged {len(removed)} sessions from the trash.")


@sessions.command()
@_dir_option
@click.option("--older-than", default=None, help="Inactive for longer than this (30d, 12h).")
@click.option("--empty", is_flag=True, help="Sessions with no messages.")
@click.option("--yes", is_flag=True, help="Move them to the trash (default: only list them).")
def cleanup(directory: str | None, older_than: str | None, empty: bool, yes: bool) -> None:
    """Find old or empty sessions; with --yes, move them to the trash."""
    if older_than is None and not empty:
        raise click.UsageError("give --older-than DAYS, --empty, or both")
    rows = _manager(directory).cleanup(
        older_than=_duration(older_than) if older_than else None, empty=empty, dry_run=not yes
    )
    verb = "Moved to the trash" if yes else "Would move to the trash"
    for r in rows:
        click.echo(
            f"{verb}: {r['id']} ({r['message_count']} messages, last active "
            f"{r['updated_at'].replace('T', ' ')})"
        )
    if not yes:
        click.echo(f"{len(rows)} sessions; add --yes to move them to the trash.")


from .migrate_cmd import migrate  # noqa: E402

sessions.add_command(migrate)

"""``scratchy sessions list|show|export|import|rm``."""

from __future__ import annotations

import json
import sys
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
def export(session_id: str, directory: str | None, output: str | None, fmt: str) -> None:
    """Export a session's messages as JSON (the docs' format), TOON or Markdown."""
    messages = _manager(directory).load_session(session_id)
    if messages is None:
        raise click.ClickException(f"No session '{session_id}'. See: scratchy sessions list")
    from .render import export_text

    text = export_text(messages, fmt, session_id=session_id)
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
    """Delete sessions."""
    sm = _manager(directory)
    missing = 0
    for sid in session_ids:
        if sm.delete_session(sid):
            click.echo(f"Deleted session '{sid}'")
        else:
            click.echo(f"No session '{sid}'", err=True)
            missing += 1
    if missing:
        sys.exit(1)

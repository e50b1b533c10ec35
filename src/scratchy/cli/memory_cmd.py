"""``scratchy memory list|search|add|edit|rm|export``: the memories kept across sessions.

In a terminal each memory is one or more lines fitted to the width (id, last change, text and
tags); in a pipe it is one tab-separated line: id, updated (local ISO 8601), tags (comma
separated), source (``SESSION#INDEX`` or empty), text. ``--json`` prints the entries as data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from .sessions_cmd import _dir_option, _manager, _not_negative, _reader

_owner_option = click.option(
    "--owner",
    default=None,
    help="Act on this server owner's memories (the owner of an API key); default: local.",
)


def _memory(directory: str | None, owner: str | None, *, create: bool = False) -> Any:
    """The MemoryStore of ``--dir`` (and ``--owner``), or None when nothing is stored yet."""
    from ..memory import MemoryStore

    sm = _manager(directory) if create else _reader(directory)
    if sm is None:
        return None
    store = sm.store.scoped(owner) if owner else sm.store
    return MemoryStore(store)


def _local(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso[:16]


def _source(m: Any) -> str:
    if not m.source:
        return ""
    return f"{m.source.get('session', '')}#{m.source.get('message', '')}"


def _print(entries: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([m.as_dict() for m in entries], indent=2, ensure_ascii=False))
        return
    if not sys.stdout.isatty():
        for m in entries:
            updated = datetime.fromisoformat(m.updated_at).astimezone().replace(tzinfo=None)
            fields = [m.id, updated.isoformat(timespec="seconds"), ",".join(m.tags), _source(m)]
            click.echo("\t".join([*fields, " ".join(m.text.split())]))
        return
    width = max(40, shutil.get_terminal_size((80, 24)).columns)
    bold = not os.environ.get("NO_COLOR")
    for m in entries:
        head = f"{m.id}  {_local(m.updated_at)}"
        extra = []
        if m.tags:
            extra.append("tags: " + ", ".join(m.tags))
        if m.source:
            extra.append("from " + _source(m))
        if m.history:
            extra.append(f"{len(m.history)} earlier text{'s' if len(m.history) > 1 else ''}")
        click.echo(click.style(head, bold=True) if bold else head)
        for line in textwrap.wrap(m.text, width - 2) or [""]:
            click.echo("  " + line)
        if extra:
            click.echo("  " + textwrap.shorten(" · ".join(extra), width - 2, placeholder="…"))


@click.group()
def memory() -> None:
    """Memories across sessions: list, search, add, edit, rm, export."""


@memory.command("list")
@_dir_option
@_owner_option
@click.option("--tag", default=None, help="Only memories with this tag.")
@click.option("-n", "--limit", default=None, type=int, help="Show only the N most recent.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(
    directory: str | None, owner: str | None, tag: str | None, limit: int | None, as_json: bool
) -> None:
    """List memories, most recently changed first."""
    _not_negative("--limit", limit, "0 lists all")
    mem = _memory(directory, owner)
    entries = mem.list(tag=tag) if mem is not None else []
    total = len(entries)
    if limit:
        entries = entries[:limit]
    if not entries and not as_json:
        click.echo('No memories yet. Add one with: scratchy memory add "I prefer tabs"', err=True)
        return
    _print(entries, as_json)
    if len(entries) < total and sys.stdout.isatty() and not as_json:
        click.echo(f"({len(entries)} of {total} memories; --limit 0 lists all)")


@memory.command()
@click.argument("query", nargs=-1, required=True)
@_dir_option
@_owner_option
@click.option("-n", "--limit", default=10, show_default=True, help="Most memories to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search(
    query: tuple[str, ...], directory: str | None, owner: str | None, limit: int, as_json: bool
) -> None:
    """Memories relevant to QUERY, best first (exit status 1 when none)."""
    if limit < 1:
        raise click.ClickException(f"-n/--limit must be 1 or more, got {limit}")
    mem = _memory(directory, owner)
    found = mem.recall(" ".join(query), limit=limit) if mem is not None else []
    if as_json:
        _print(found, True)
    elif found:
        _print(found, False)
    else:
        click.echo("No memories match.", err=True)
    if not found:
        sys.exit(1)


@memory.command()
@click.argument("text", nargs=-1, required=True)
@_dir_option
@_owner_option
@click.option("-t", "--tag", "tags", multiple=True, help="A tag (repeat for several).")
def add(
    text: tuple[str, ...], directory: str | None, owner: str | None, tags: tuple[str, ...]
) -> None:
    """Remember TEXT (refused when it looks like a secret)."""
    mem = _memory(directory, owner, create=True)
    before = mem.count()
    entry = mem.remember(" ".join(text), tags=list(tags))
    verb = "Remembered" if mem.count() > before else "Already remembered"
    click.echo(f"{verb} {entry.id}: {entry.text}")


@memory.command()
@click.argument("memory_id")
@click.argument("text", nargs=-1, required=True)
@_dir_option
@_owner_option
def edit(memory_id: str, text: tuple[str, ...], directory: str | None, owner: str | None) -> None:
    """Replace a memory's text (the old text is kept in its history)."""
    mem = _memory(directory, owner)
    if mem is None:
        raise click.ClickException(f"No memory '{memory_id}' (see: scratchy memory list)")
    entry = mem.update(mem.resolve(memory_id).id, " ".join(text))
    click.echo(f"Updated {entry.id}: {entry.text}")


@memory.command("rm")
@click.argument("memory_ids", nargs=-1)
@_dir_option
@_owner_option
@click.option("--session", "session_id", default=None, help="Every memory taken from SESSION.")
def rm(
    memory_ids: tuple[str, ...], directory: str | None, owner: str | None, session_id: str | None
) -> None:
    """Delete memories for good (ids, id prefixes or --session)."""
    from ..errors import ScratchyError

    if not memory_ids and session_id is None:
        raise click.UsageError("give memory ids (see `scratchy memory list`) or --session ID")
    mem = _memory(directory, owner)
    missing = 0
    if session_id is not None:
        ids = mem.forget_session(session_id) if mem is not None else []
        click.echo(f"Forgot {len(ids)} memories taken from session '{session_id}'")
    for mid in memory_ids:
        try:
            entry = mem.resolve(mid) if mem is not None else None
        except ScratchyError as exc:
            click.echo(f"{exc}", err=True)
            missing += 1
            continue
        if entry is None or not mem.forget(entry.id):
            click.echo(f"No memory '{mid}'", err=True)
            missing += 1
            continue
        click.echo(f"Forgot {entry.id}: {entry.text}")
    if missing:
        sys.exit(1)


@memory.command()
@_dir_option
@_owner_option
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "toon"]), default="json", show_default=True
)
def export(directory: str | None, owner: str | None, output: str | None, fmt: str) -> None:
    """Export every memory with its history (JSON or TOON)."""
    mem = _memory(directory, owner)
    data = mem.export() if mem is not None else []
    if fmt == "toon":
        from .. import toon

        text = toon.dumps({"format": "scratchy-memories/1", "memories": data})
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
        return
    target = Path(output).expanduser()
    if not target.parent.is_dir():
        raise click.ClickException(f"Cannot write {output}: {target.parent} does not exist")
    try:
        target.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"Exported {len(data)} memories to {output}", err=True)

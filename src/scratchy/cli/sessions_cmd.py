"""``scratchy sessions list|show|export|import|rm``."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click


def _manager(directory: str | None):  # type: ignore[no-untyped-def]
    from ..sessions import SessionManager

    return SessionManager(directory)


def _missing_store(location: str) -> str | None:
    """Why ``location`` holds no store yet (a directory or SQLite file that does not exist), or
    None when it exists or cannot be checked from here (Redis, PostgreSQL)."""
    if "://" not in location:
        path = Path(location).expanduser()
        if path.is_dir():
            return None
        if path.exists():
            return f"session directory '{location}' is not a directory"
        return f"session directory '{location}' does not exist"
    if location.startswith("sqlite://"):
        raw = location.removeprefix("sqlite://").split("?", 1)[0]
        if raw in ("", "/", "/:memory:") or Path(raw[1:] if raw.startswith("/") else raw).exists():
            return None
        return f"SQLite database '{raw[1:]}' does not exist"
    return None


def _reader(directory: str | None, option: str = "--dir"):  # type: ignore[no-untyped-def]
    """The manager for a command that only reads or moves existing sessions, or None when the
    default location has nothing stored yet. Never creates a directory or a database: a
    location given by ``--dir`` (or ``$SCRATCHY_SESSION_DIR``) that does not exist is an
    error."""
    from ..sessions import DEFAULT_SESSION_DIR, SESSION_DIR_ENV

    location = directory or os.environ.get(SESSION_DIR_ENV) or str(DEFAULT_SESSION_DIR)
    problem = _missing_store(location)
    if problem is None:
        return _manager(directory)
    if directory is None and not os.environ.get(SESSION_DIR_ENV):
        return None  # the default place, before the first session: nothing stored
    where = option if directory is not None else f"${SESSION_DIR_ENV}"
    raise click.ClickException(f"{problem}; check {where} (nothing was created)")


def cli_message(exc: BaseException | str) -> str:
    """The text of a library error as the command line shows it: the store's hints name the
    Python API (``SessionManager.delete_session``, ``list_trash()``, ``force=True``); here they
    name the commands instead. The one place where that wording is translated (``exc`` may
    also be a line of text that quotes such an error)."""
    text = str(exc)
    sid = getattr(exc, "session_id", None)
    if sid is None:
        found = re.search(r"([A-Za-z0-9][A-Za-z0-9._-]*)_chat\.toon\b", text)
        quoted = re.search(r"[Ss]ession '([^']+)'", text)
        sid = found.group(1) if found else quoted.group(1) if quoted else "ID"
    for pattern, replacement in (
        (r"\(see list_trash\(\)\)", "(see: scratchy sessions trash)"),
        (
            r"\(SessionManager\.delete_session removes it\)",
            f"(scratchy sessions rm {sid} moves it to the trash)",
        ),
        (
            r"\(SessionManager\.delete_session\)",
            f"(scratchy sessions rm {sid})",
        ),
        (
            r"Load it again, use append\(\), or pass force=True to overwrite\.",
            "Run the command again to use what is stored now, or pass --force to overwrite.",
        ),
        (r"\bforce=True\b", "--force"),
    ):
        text = re.sub(pattern, lambda _m, r=replacement: r, text)
    return text


_dir_option = click.option(
    "--dir",
    "directory",
    default=None,
    help="Session directory or store URL (default: scratchy/session_history).",
)


def _check_ids(*session_ids: str | None) -> None:
    """Refuse an invalid id before looking anywhere (one line naming the rule)."""
    from ..sessions import SessionManager

    for sid in session_ids:
        if sid is not None:
            SessionManager.validate_id(sid)


def _not_negative(name: str, value: int | None, meaning: str) -> None:
    if value is not None and value < 0:
        raise click.ClickException(f"{name} must be 0 or more ({meaning}), got {value}")


@click.group()
def sessions() -> None:
    """List, show, export, import and delete stored sessions."""


def _table(rows: list[dict], width: int, cost: bool = False) -> list[str]:
    """Aligned lines of the session table for a terminal ``width`` columns wide. Ids are never
    cut: the Created column goes first, then the title shrinks or goes, then Last activity.
    ``cost``: a Cost column after Messages (kept, like the ids)."""
    from rich.cells import cell_len, set_cell_size

    def when(iso: str) -> str:
        return iso.replace("T", " ")[:16]

    cells = [
        {
            "ID": r["id"],
            "Messages": "corrupted" if r["corrupted"] else str(r["message_count"]),
            "Last activity": when(r["updated_at"]),
            "Created": when(r["created_at"]),
            "Title": " ".join((r["title"] or "").split()),
            "Cost": r["_cost"].text(short=True) if "_cost" in r else "",
        }
        for r in rows
    ]

    def widest(name: str) -> int:
        return max([cell_len(name)] + [cell_len(c[name]) for c in cells])

    gap = 2
    columns = ["ID", "Messages", "Last activity", "Created", "Title"]
    if cost:
        columns.insert(2, "Cost")
    widths = {name: widest(name) for name in columns}
    widths["Title"] = min(widths["Title"], 40)

    def total(names: list[str]) -> int:
        return sum(widths[n] for n in names) + gap * (len(names) - 1)

    for drop in ("Created", "Title", "Last activity", "Messages"):
        if total(columns) <= width:
            break
        if drop == "Title":
            room = width - total([n for n in columns if n != "Title"]) - gap
            if room >= 10:
                widths["Title"] = room
                break
        columns.remove(drop)
    right = {"Messages"}

    def line(values: dict[str, str], header: bool = False) -> str:
        parts = []
        for n in columns:
            text = values[n]
            w = widths[n]
            if n == "Title" and cell_len(text) > w:
                text = set_cell_size(text, w - 1) + "…"
            if n == columns[-1] and n not in right:
                parts.append(text)
            elif n in right:
                parts.append(" " * (w - cell_len(text)) + text)
            else:
                parts.append(text + " " * (w - cell_len(text)))
        out = (" " * gap).join(parts).rstrip()
        return click.style(out, bold=True) if header and not os.environ.get("NO_COLOR") else out

    return [line({n: n for n in columns}, header=True)] + [line(c) for c in cells]


@sessions.command("list")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "-n", "--limit", default=None, type=int, help="Show only the N first (newest, or costliest)."
)
@click.option(
    "--sort",
    type=click.Choice(["activity", "cost"]),
    default="activity",
    show_default=True,
    help="Newest activity first, or highest cost first (and a Cost column).",
)
def list_cmd(directory: str | None, as_json: bool, limit: int | None, sort: str) -> None:
    """List sessions, newest activity first.

    --sort cost: highest cost first, with a Cost column in the table. In a terminal: a table
    whose ids are never cut (other columns shrink or go first). In a pipe: one tab-separated
    line per session, no header: id, messages (or "corrupted"), last activity, created (local
    ISO 8601), title. --json adds each session's usage and cost.
    """
    from .cost_cmd import cost_rows

    _not_negative("--limit", limit, "0 lists all")
    sm = _reader(directory)
    paged = sort != "cost" and limit and limit <= 1000 and (as_json or not sys.stdout.isatty())
    if sm is not None and paged:
        rows = cost_rows(sm.list_page(limit=limit).items, sort)  # a page costs the page
        total = len(rows)  # (the count of all is only shown in a terminal)
    else:
        rows = cost_rows(sm.store.list(), sort) if sm is not None else []
        total = len(rows)
    if limit:
        rows = rows[:limit]
    if as_json:
        plain = [{k: v for k, v in r.items() if k != "_cost"} for r in rows]
        click.echo(json.dumps(plain, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No sessions yet. Start one with: scratchy chat -s NAME", err=True)
        return
    if not sys.stdout.isatty():
        for r in rows:
            count = "corrupted" if r["corrupted"] else str(r["message_count"])
            title = " ".join((r["title"] or "").split())
            click.echo("\t".join([r["id"], count, r["updated_at"], r["created_at"], title]))
        return
    width = shutil.get_terminal_size((80, 24)).columns
    for text in _table(rows, width, cost=sort == "cost"):
        click.echo(text)
    if len(rows) < total:
        click.echo(f"({len(rows)} of {total} sessions; --limit 0 lists all)")


@sessions.command()
@click.argument("session_id")
@_dir_option
@click.option("-n", "--last", default=0, type=int, help="Show only the last N messages (0: all).")
def show(session_id: str, directory: str | None, last: int) -> None:
    """Show a session's header and messages."""
    _not_negative("-n/--last", last, "0 shows every message")
    _check_ids(session_id)
    sm = _reader(directory)
    info = sm.session_info(session_id) if sm is not None else None
    if info is None:
        raise click.ClickException(f"No session '{session_id}'. See: scratchy sessions list")
    if info.error:
        raise click.ClickException(cli_message(info.error))
    messages = sm.load_session(session_id) or []
    d = info.as_dict()
    click.echo(
        f"Session: {session_id}\nTitle: {d['title']}\nMessages: {d['message_count']}\n"
        f"Created: {d['created_at'].replace('T', ' ')}\n"
        f"Last activity: {d['updated_at'].replace('T', ' ')}"
    )
    usage = info.metadata.get("usage") if info.metadata else None
    if usage:
        from ..cost import Cost

        click.echo(
            f"Tokens: {usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
        )
        click.echo(f"Cost: {Cost.of(usage)}")
    from .render import format_transcript

    click.echo()
    width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else None
    click.echo(format_transcript(messages[-last:] if last else messages, width))


@sessions.command()
@click.argument("session_id")
@_dir_option
@click.option(
    "-o",
    "--output",
    type=str,
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
    _check_ids(session_id)
    target = Path(output).expanduser() if output else None
    if target is not None and target.is_dir():
        raise click.ClickException(f"Cannot write {output}: it is a directory")
    if target is not None and not target.parent.is_dir():
        raise click.ClickException(
            f"Cannot write {output}: the directory {target.parent} does not exist "
            "(create it first, or give another -o path)"
        )
    sm = _reader(directory)
    messages = sm.load_session(session_id) if sm is not None else None
    if messages is None:
        raise click.ClickException(f"No session '{session_id}'. See: scratchy sessions list")
    from .render import export_text

    text = export_text(messages, fmt, session_id=session_id, redact=redact)
    if target is not None:
        try:
            target.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"Cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"Exported {len(messages)} messages to {output}", err=True)
    else:
        click.echo(text)


def _read_import(file: str) -> list:
    """The messages of an import file: a JSON list, or a JSON/TOON session file or export with
    ``messages``. Every unreadable or unexpected file is one ClickException saying why."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"Cannot read {file}: {exc.strerror or exc}") from None
    name = "stdin" if file == "-" else file
    expected = (
        "expected a JSON list of messages, or a session file or export (JSON or TOON) with "
        "'messages'; `scratchy sessions export ID` shows the format"
    )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert it to UTF-8, e.g. with iconv -t utf-8, and import it again"
        ) from None
    if not text.strip():
        raise click.ClickException(f"{name} is empty: {expected}")
    try:
        data = json.loads(text)
    except ValueError:
        from .. import toon

        try:
            data = toon.loads(text)
        except toon.ToonDecodeError as exc:
            raise click.ClickException(
                f"{name} is neither JSON nor TOON ({exc}); export a session with "
                "`scratchy sessions export` to see the expected format"
            ) from None
    if isinstance(data, dict):
        if "messages" not in data:
            raise click.ClickException(f"{name} holds an object without 'messages': {expected}")
        data = data["messages"]
    if not isinstance(data, list):
        kind = "a string" if isinstance(data, str) else f"a {type(data).__name__} value"
        raise click.ClickException(f"{name} holds {kind}, not a list of messages: {expected}")
    return data


@sessions.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--id", "session_id", required=True, help="Id of the new session.")
@_dir_option
@click.option("--force", is_flag=True, help="Overwrite an existing session.")
def import_cmd(file: str, session_id: str, directory: str | None, force: bool) -> None:
    """Import a JSON list of messages (or a TOON/JSON session file) as a session.

    FILE may be - for stdin."""
    _check_ids(session_id)
    data = _read_import(file)
    sm = _manager(directory)
    if sm.session_exists(session_id) and not force:
        raise click.ClickException(
            f"Session '{session_id}' already exists; choose another --id or pass --force"
        )
    info = sm.save_session(session_id, data, force=force)
    click.echo(f"Imported {info.message_count} messages into '{session_id}'")


@sessions.command("rm")
@click.argument("session_ids", nargs=-1, required=True)
@_dir_option
@click.option(
    "--with-memories", is_flag=True, help="Also forget the memories taken from these sessions."
)
def rm(session_ids: tuple[str, ...], directory: str | None, with_memories: bool) -> None:
    """Delete sessions (they go to the trash; see `restore` and `purge`)."""
    _check_ids(*session_ids)
    sm = _reader(directory)
    missing = 0
    for sid in session_ids:
        if sm is not None and sm.delete_session(sid):
            undo = f"scratchy sessions restore {sid}"
            click.echo(f"Moved session '{sid}' to the trash (undo: {undo})")
            if with_memories:
                from ..memory import MemoryStore

                gone = MemoryStore(sm.store).forget_session(sid)
                click.echo(f"Forgot {len(gone)} memories taken from it (for good)")
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
    _not_negative("-n/--limit", limit, "the most hits to show")
    sm = _reader(directory)
    hits = sm.search(" ".join(query), limit=limit) if sm is not None and limit else []
    if not hits:
        click.echo("No matches.")
        sys.exit(1)
    for hit in hits:
        click.echo(f"{hit.session_id}  #{hit.index} {hit.role}: {' '.join(hit.snippet.split())}")


@sessions.command()
@_dir_option
def trash(directory: str | None) -> None:
    """List deleted sessions (restore them with `scratchy sessions restore ID`)."""
    sm = _reader(directory)
    rows = sm.list_trash() if sm is not None else []
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
    from ..errors import SessionNotFoundError

    _check_ids(session_id)
    sm = _reader(directory)
    if sm is None:
        raise SessionNotFoundError(f"Session '{session_id}' is not in the trash (see list_trash())")
    info = sm.restore_session(session_id)
    click.echo(f"Restored '{session_id}' ({info.message_count} messages)")


@sessions.command()
@click.argument("session_id", required=False)
@_dir_option
@click.option("--older-than", default=None, help="Only entries deleted before this (7d, 12h).")
@click.option("--yes", is_flag=True, help="Really delete (without it, only show what would go).")
def purge(session_id: str | None, directory: str | None, older_than: str | None, yes: bool) -> None:
    """Delete sessions in the trash for good."""
    _check_ids(session_id)
    age = _duration(older_than) if older_than else None
    sm = _reader(directory)
    if sm is None:
        click.echo("The trash is empty.")
        return
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
    age = _duration(older_than) if older_than else None
    sm = _reader(directory)
    rows = sm.cleanup(older_than=age, empty=empty, dry_run=not yes) if sm is not None else []
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
from .cost_cmd import cost  # noqa: E402

sessions.add_command(cost)

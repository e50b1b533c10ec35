"""Slash commands of the REPL, kept in one registry that also builds ``/help`` and completion."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit.completion import Completer, Completion

from ..errors import InvalidSessionIdError
from ..stores.base import local_iso, validate_session_id
from .render import export_text, format_transcript, short

if TYPE_CHECKING:
    from prompt_toolkit.document import Document

    from .repl import Repl

Handler = Callable[["Repl", list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SlashCommand:
    """One slash command: its handler, usage and help line."""

    handler: Handler
    usage: str
    help: str
    completes_session: bool = False


COMMANDS: dict[str, SlashCommand] = {}


def command(
    name: str, usage: str, help: str, *, sessions: bool = False, aliases: tuple[str, ...] = ()
) -> Callable[[Handler], Handler]:
    """Register a slash command handler under ``/name`` (and its aliases)."""

    def register(fn: Handler) -> Handler:
        for n in (name, *aliases):
            COMMANDS["/" + n] = SlashCommand(fn, usage, help, sessions)
        return fn

    return register


async def dispatch(repl: Repl, line: str) -> None:
    """Run the slash command on ``line``, or say which command was probably meant."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        repl.error(f"Could not parse '{line}': {exc}")
        return
    name, args = words[0].lower(), words[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]}?" if close else ""
        repl.error(f"Unknown command '{name}'.{hint} Type /help for the list.")
        return
    await cmd.handler(repl, args)


def _usage(repl: Repl, name: str) -> None:
    repl.error(f"Usage: {COMMANDS[name].usage}")


def _session_id(repl: Repl, name: str, args: list[str]) -> str | None:
    if len(args) != 1:
        _usage(repl, name)
        return None
    try:
        return validate_session_id(args[0])
    except InvalidSessionIdError as exc:
        repl.error(str(exc))
        return None


def _closest_session(repl: Repl, session_id: str) -> str:
    ids = [s["id"] for s in repl.sm.list_sessions()]
    close = difflib.get_close_matches(session_id, ids, n=1, cutoff=0.6)
    return f" Did you mean /resume {close[0]}?" if close else ""


@command("help", "/help", "Show the commands")
async def _help(repl: Repl, args: list[str]) -> None:
    seen: set[int] = set()
    repl.say("Commands:")
    for cmd in COMMANDS.values():
        if id(cmd.handler) in seen:
            continue
        seen.add(id(cmd.handler))
        repl.say(f"   {cmd.usage:<34} {cmd.help}")
    repl.say("   Esc+Enter inserts a new line; Ctrl-C cancels a reply; Ctrl-D exits.")


@command("status", "/status", "Show current session info")
async def _status(repl: Repl, args: list[str]) -> None:
    session = repl.agent.get_session(repl.session_id)
    pending = session.messages[session.saved_count :]
    saved = repl.sm.session_exists(repl.session_id) and (
        not session.unsynced or all(m.get("role") == "system" for m in pending)
    )
    repl.say("📊 Current Session Status:")
    repl.say(f"   Session ID: {session.session_id}")
    repl.say(f"   Messages: {len(session.messages)}")
    repl.say(f"   Created: {local_iso(session.created_at).replace('T', ' ')}")
    repl.say(f"   Last Activity: {local_iso(session.last_activity).replace('T', ' ')}")
    repl.say(f"   Saved: {'Yes' if saved else 'No'}")
    usage = session.metadata.get("usage")
    if usage:
        repl.say(
            f"   Tokens: {usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
        )
    provider = repl.agent._provider
    if provider is not None:
        repl.say(f"   Model: {provider.name}:{provider.model}")


@command("sessions", "/sessions", "List all sessions")
async def _sessions(repl: Repl, args: list[str]) -> None:
    rows = repl.sm.list_sessions()
    if not any(r["id"] == repl.session_id for r in rows):
        repl.say(f" → {repl.session_id}  (not saved yet)")
    if not rows:
        repl.say("No saved sessions yet.")
        return
    repl.say(f"📚 Sessions ({len(rows)}):")
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        mark = "→" if r["id"] == repl.session_id else " "
        count = "corrupted" if r["corrupted"] else f"{r['message_count']} messages"
        when = r["updated_at"].replace("T", " ")
        title = f"  {short(r['title'], 50)}" if r["title"] else ""
        repl.say(f" {mark} {r['id']:<{width}}  {count:>13}  {when}{title}")


@command("new", "/new <id>", "Create new session")
async def _new(repl: Repl, args: list[str]) -> None:
    session_id = _session_id(repl, "/new", args)
    if session_id is None:
        return
    if repl.sm.session_exists(session_id) or session_id in repl.agent.sessions:
        repl.error(f"Session '{session_id}' already exists: use /resume {session_id}")
        return
    repl.sm.create_session(session_id)
    repl.agent.get_session(session_id)
    repl.session_id = session_id
    repl.say(f"✨ Created new session: '{session_id}'")


@command("resume", "/resume <id>", "Resume session", sessions=True)
async def _resume(repl: Repl, args: list[str]) -> None:
    session_id = _session_id(repl, "/resume", args)
    if session_id is None:
        return
    if not repl.sm.session_exists(session_id) and session_id not in repl.agent.sessions:
        repl.error(
            f"No session '{session_id}'.{_closest_session(repl, session_id)} "
            f"Create it with /new {session_id}"
        )
        return
    session = repl.agent.get_session(session_id)
    repl.agent.refresh(session)
    repl.session_id = session_id
    repl.say(f"📂 Resumed session: '{session_id}' ({len(session.messages)} messages)")


@command("clear", "/clear", "Clear current session")
async def _clear(repl: Repl, args: list[str]) -> None:
    session = repl.agent.get_session(repl.session_id)
    session.clear()
    repl.agent.save(session)
    repl.say(f"🧹 Cleared session '{repl.session_id}' (kept the system message)")


@command("undo", "/undo", "Drop the last turn (your last message and its answers)")
async def _undo(repl: Repl, args: list[str]) -> None:
    session = repl.agent.get_session(repl.session_id)
    last = max((i for i, m in enumerate(session.messages) if m.get("role") == "user"), default=None)
    if last is None:
        repl.error("Nothing to undo in this session")
        return
    dropped = len(session.messages) - last
    session.messages = session.messages[:last]
    repl.agent.save(session)
    repl.say(f"↩ Dropped the last turn ({dropped} messages)")


@command("history", "/history [n]", "Show the last n messages (default 10)")
async def _history(repl: Repl, args: list[str]) -> None:
    if len(args) > 1 or (args and not args[0].isdigit()):
        _usage(repl, "/history")
        return
    n = int(args[0]) if args else 10
    messages = repl.agent.get_session(repl.session_id).messages
    repl.say(format_transcript(messages[-n:] if n else []) or "(no messages)")


@command("delete", "/delete <id>", "Delete a stored session", sessions=True)
async def _delete(repl: Repl, args: list[str]) -> None:
    session_id = _session_id(repl, "/delete", args)
    if session_id is None:
        return
    if session_id == repl.session_id:
        repl.error("That is the current session: switch with /resume or /new first")
        return
    repl.agent.sessions.pop(session_id, None)
    if repl.sm.delete_session(session_id):
        repl.say(f"🗑 Moved session '{session_id}' to the trash")
    else:
        repl.error(f"No session '{session_id}'.{_closest_session(repl, session_id)}")


@command("export", "/export [path] [--format md|json|toon] [--redact]", "Export this session")
async def _export(repl: Repl, args: list[str]) -> None:
    fmt: str | None = None
    paths: list[str] = []
    redact = False
    it = iter(args)
    for a in it:
        if a == "--format" or a.startswith("--format="):
            fmt = a.split("=", 1)[1] if "=" in a else next(it, "")
        elif a == "--redact":
            redact = True
        else:
            paths.append(a)
    if len(paths) > 1:
        _usage(repl, "/export")
        return
    path = Path(paths[0]) if paths else None
    fmt = fmt or ({".json": "json", ".toon": "toon"}.get(path.suffix, "md") if path else "md")
    if fmt not in ("md", "json", "toon"):
        repl.error(f"Unknown format '{fmt}': use md, json or toon")
        return
    path = path or Path(f"{repl.session_id}.{fmt}")
    messages = repl.agent.get_session(repl.session_id).messages
    try:
        path.write_text(
            export_text(messages, fmt, session_id=repl.session_id, redact=redact) + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        repl.error(f"Could not write {path}: {exc.strerror}")
        return
    repl.say(f"💾 Exported {len(messages)} messages to {path}")


@command("fork", "/fork <new_id>", "Copy this session to a new one and switch to it")
async def _fork(repl: Repl, args: list[str]) -> None:
    new_id = _session_id(repl, "/fork", args)
    if new_id is None:
        return
    session = repl.agent.get_session(repl.session_id)
    repl.agent.save(session)
    if repl.sm.session_exists(new_id):
        repl.error(f"Session '{new_id}' already exists: choose another id")
        return
    info = repl.sm.fork_session(repl.session_id, new_id)
    repl.say(f"🍴 Forked '{repl.session_id}' into '{new_id}' ({info.message_count} messages)")
    repl.session_id = new_id
    repl.agent.get_session(new_id)


@command("search", "/search <words>", "Search all sessions")
async def _search(repl: Repl, args: list[str]) -> None:
    if not args:
        _usage(repl, "/search")
        return
    repl.agent.save(repl.agent.get_session(repl.session_id))
    hits = repl.sm.search(" ".join(args), limit=10)
    if not hits:
        repl.say("No matches.")
        return
    for hit in hits:
        repl.say(f" {hit.session_id} #{hit.index} ({hit.role}): {short(hit.snippet, 90)}")


@command("compact", "/compact", "Summarise older turns to free context (reversible)")
async def _compact(repl: Repl, args: list[str]) -> None:
    folded = await repl.agent.compact(repl.session_id)
    if folded:
        repl.say(f"🗜 Summarised {folded} older messages (the originals are kept in the session)")
    else:
        repl.say("Nothing to compact yet.")


@command("tools", "/tools", "List the tools the model can use")
async def _tools(repl: Repl, args: list[str]) -> None:
    repl.ensure_tools()
    tools = list(repl.agent.tools)
    if not tools:
        repl.say("No tools loaded.")
    for t in tools:
        flag = " (asks first)" if t.needs_approval else ""
        repl.say(f"   {t.name:<14} {short(t.description, 70)}{flag}")


@command("model", "/model [provider:model]", "Show or switch the model")
async def _model(repl: Repl, args: list[str]) -> None:
    if len(args) > 1:
        _usage(repl, "/model")
        return
    if args:
        repl.agent.set_model(args[0])
        repl._warm_up()
    p = repl.agent.provider
    repl.say(f"🧠 Model: {p.name}:{p.model}")


@command("exit", "/exit", "Leave (Ctrl-D too)", aliases=("quit",))
async def _exit(repl: Repl, args: list[str]) -> None:
    repl.running = False


class SlashCompleter(Completer):
    """Completes command names, and session ids after ``/resume`` and ``/delete``."""

    def __init__(self, repl: Repl) -> None:
        self.repl = repl

    def get_completions(self, document: Document, complete_event: Any) -> Iterator[Completion]:
        """Yield completions for the text before the cursor."""
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        if " " not in text:
            for name in COMMANDS:
                if name.startswith(text):
                    yield Completion(name, -len(text), display_meta=COMMANDS[name].help)
            return
        name, _, prefix = text.partition(" ")
        cmd = COMMANDS.get(name)
        if cmd is not None and cmd.completes_session and " " not in prefix:
            for row in self.repl.sm.list_sessions():
                if row["id"].startswith(prefix):
                    yield Completion(row["id"], -len(prefix))

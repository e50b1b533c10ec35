"""Slash commands of the REPL, kept in one registry that also builds ``/help`` and completion."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit.completion import Completer, Completion

from ..errors import InvalidSessionIdError, ScratchyError, SessionConflictError
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
    raw: bool = False
    """The handler gets the rest of the line as one argument (no quoting rules)."""


COMMANDS: dict[str, SlashCommand] = {}


def command(
    name: str,
    usage: str,
    help: str,
    *,
    sessions: bool = False,
    aliases: tuple[str, ...] = (),
    raw: bool = False,
) -> Callable[[Handler], Handler]:
    """Register a slash command handler under ``/name`` (and its aliases)."""

    def register(fn: Handler) -> Handler:
        for n in (name, *aliases):
            COMMANDS["/" + n] = SlashCommand(fn, usage, help, sessions, raw)
        return fn

    return register


async def dispatch(repl: Repl, line: str) -> None:
    """Run the slash command on ``line``, or say which command was probably meant."""
    head, _, rest = line.strip().partition(" ")
    name = head.lower()
    cmd = COMMANDS.get(name)
    if cmd is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]}?" if close else ""
        repl.error(f"Unknown command '{name}'.{hint} Type /help for the list.")
        return
    if cmd.raw:
        args = [rest.strip()] if rest.strip() else []
    else:
        try:
            args = shlex.split(rest)
        except ValueError as exc:
            repl.error(f"Could not read the arguments of {name}: {exc} (close the quote)")
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
    width = max(40, repl.width() - 1)
    wide = width >= 72  # usage and help side by side; narrower: help below its usage
    column = max(len(c.usage) for c in COMMANDS.values() if len(c.usage) <= 24)
    repl.say("Commands:")
    for cmd in COMMANDS.values():
        if id(cmd.handler) in seen:
            continue
        seen.add(id(cmd.handler))
        if wide:
            lead = f"   {cmd.usage:<{column}}  "
            if len(cmd.usage) > column:  # a long usage gets its own line
                repl.say(f"   {cmd.usage}")
                lead = " " * (column + 5)
            repl.say_wrapped(cmd.help, lead, " " * len(lead))
        else:
            repl.say(f"   {cmd.usage}")
            repl.say_wrapped(cmd.help, "       ", "       ")
    for note in (
        "Esc+Enter inserts a new line; Ctrl-C cancels a reply; Ctrl-D exits.",
        "Start a message with // to send one that begins with / (//usr/bin sends /usr/bin).",
    ):
        repl.say_wrapped(note, "   ", "   ")


@command("status", "/status", "Show current session info")
async def _status(repl: Repl, args: list[str]) -> None:
    from ..cost import Cost, pricing_of
    from .repl import demo_model_notice, stored_as_in_memory

    if args:
        _usage(repl, "/status")
        return
    session = repl.agent.get_session(repl.session_id)

    def field(text: str) -> None:  # a long value wraps under itself, not under the label
        repl.say_wrapped(text, "   ", "     ")

    info = repl.sm.session_info(repl.session_id)  # what the store holds, now
    repl.say("📊 Current Session Status:")
    repl.say(f"   Session ID: {session.session_id}")
    if info is None:
        repl.say("   Messages: 0")
        repl.say(f"   Created: {local_iso(session.created_at).replace('T', ' ')}")
        field("Saved: No (not stored yet: it is stored with its first turn)")
    elif info.error is not None:
        repl.say("   Messages: ? (the stored session cannot be read)")
        field(f"Saved: No ({info.error})")
    else:
        stored = info.message_count or 0
        repl.say(f"   Messages: {stored}")
        repl.say(f"   Created: {local_iso(info.created_at).replace('T', ' ')}")
        repl.say(f"   Last Activity: {local_iso(info.updated_at).replace('T', ' ')}")
        field(f"Saved: {_saved(repl, session.messages, stored, stored_as_in_memory)}")
    usage = (info.metadata if info is not None else session.metadata).get("usage")
    if usage:
        repl.say(
            f"   Tokens: {usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
        )
        field(f"Cost: {Cost.of(usage)}")
    try:
        provider = repl.agent.provider
    except ScratchyError:
        provider = None
    if provider is not None:
        repl.say(f"   Model: {provider.name}:{provider.model}")
        field(f"Price: {pricing_of(provider).describe()}")
        notice = demo_model_notice(repl.agent)
        if notice:
            field(notice)


def _saved(repl: Repl, memory: list[Any], stored: int, same: Callable[..., bool]) -> str:
    """``Yes`` when the store holds what this REPL shows, else what differs."""
    if same(repl, repl.session_id):
        return "Yes"
    if stored > len(memory):
        return f"Yes, and {stored - len(memory)} newer messages are stored (/resume loads them)"
    if stored < len(memory):
        return f"No ({len(memory) - stored} messages not stored yet)"
    return "No (the store differs from what is shown: /reload reads it again)"


_SESSIONS_SHOWN = 50


@command("sessions", "/sessions", "List all sessions")
async def _sessions(repl: Repl, args: list[str]) -> None:
    page = repl.sm.list_page(limit=_SESSIONS_SHOWN)  # the newest: costs the page, not the store
    rows = [info.as_dict() for info in page.items]
    if not any(r["id"] == repl.session_id for r in rows) and not repl.sm.session_exists(
        repl.session_id
    ):
        repl.say(f" → {repl.session_id}  (not saved yet)")
    if not rows:
        repl.say("No saved sessions yet.")
        return
    more = page.next_cursor is not None
    repl.say(f"📚 Sessions ({len(rows)} most recent):" if more else f"📚 Sessions ({len(rows)}):")
    width = min(max(len(r["id"]) for r in rows), max(8, repl.width() // 3))
    for r in rows:
        mark = "→" if r["id"] == repl.session_id else " "
        count = "corrupted" if r["corrupted"] else f"{r['message_count']} messages"
        when = r["updated_at"].replace("T", " ")
        line = f" {mark} {repl.short_id(r['id']):<{width}}  {count:>13}  {when}"
        room = repl.width() - 1 - len(line) - 2
        if r["title"] and room >= 8:  # the title fills what is left of the line, never wraps
            line += f"  {short(r['title'], min(50, room))}"
        repl.say(line)
    if more:
        repl.say("   … and older ones: scratchy sessions list")


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
    await repl.agent.aclose_session(repl.session_id)  # the session left: fold its journal
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
    if session_id != repl.session_id:
        await repl.agent.aclose_session(repl.session_id)  # the session left: fold its journal
    repl.session_id = session_id
    repl.say(f"📂 Resumed session: '{session_id}' ({len(session.messages)} messages)")


@command("reload", "/reload", "Read this session again from the store (drops unsaved changes)")
async def _reload(repl: Repl, args: list[str]) -> None:
    if args:
        _usage(repl, "/reload")
        return
    session = repl.agent.reload(repl.session_id)
    repl.say(f"🔄 Reloaded '{repl.session_id}' from the store ({len(session.messages)} messages)")


@command("clear", "/clear", "Clear current session (/undo brings it back)")
async def _clear(repl: Repl, args: list[str]) -> None:
    if args:
        repl.error("Usage: /clear (takes no arguments; it clears the current session)")
        return
    session = repl.agent.get_session(repl.session_id)
    before = list(session.messages)
    kept = [m for m in before[:1] if m.get("role") == "system"]
    removed = len(before) - len(kept)
    if not removed:
        repl.say(f"Nothing to clear in '{repl.session_id}'.")
        return
    await repl.agent.arewrite(session, kept)  # a refused save leaves the chat as it was
    repl.cleared = (repl.session_id, before)
    repl.say(
        f"🧹 Cleared session '{repl.session_id}': {removed} messages removed from the stored "
        "session (kept the system message). /undo now brings them back; /fork <id> first "
        "keeps a copy."
    )


@command("undo", "/undo", "Drop the last turn (your last message and its answers)")
async def _undo(repl: Repl, args: list[str]) -> None:
    if args:
        _usage(repl, "/undo")
        return
    session = repl.agent.get_session(repl.session_id)
    if repl.cleared is not None and repl.cleared[0] == repl.session_id:
        messages = repl.cleared[1]
        await repl.agent.arewrite(session, messages)
        repl.cleared = None
        repl.say(f"↩ Restored the {len(messages)} messages of '{repl.session_id}' before /clear")
        return
    last = max((i for i, m in enumerate(session.messages) if m.get("role") == "user"), default=None)
    if last is None:
        repl.error("Nothing to undo in this session")
        return
    dropped = len(session.messages) - last
    await repl.agent.arewrite(session, session.messages[:last])
    repl.say(f"↩ Dropped the last turn ({dropped} messages)")


@command("history", "/history [n]", "Show the last n messages (default 10)")
async def _history(repl: Repl, args: list[str]) -> None:
    if len(args) > 1 or (args and not (args[0].isdigit() and int(args[0]) > 0)):
        repl.error("Usage: /history [n] (n: how many of the last messages, 1 or more)")
        return
    n = int(args[0]) if args else 10
    messages = repl.agent.get_session(repl.session_id).messages
    repl.say(format_transcript(messages[-n:], repl.width()) or "(no messages)")


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
            fmt = a.split("=", 1)[1] if "=" in a else next(it, None)
            if not fmt or fmt.startswith("--"):
                repl.error("--format needs a value: md, json or toon (e.g. /export --format json)")
                return
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
    if repl.sm.session_exists(new_id):
        repl.error(f"Session '{new_id}' already exists: choose another id")
        return
    try:
        await repl.agent.asave(session)
    except SessionConflictError:  # the chat cannot be saved here: keep it in the fork
        meta = {"forked_from": {"id": repl.session_id, "messages": len(session.messages)}}
        info = repl.sm.store.replace(new_id, session.messages, expected_version="", metadata=meta)
    else:
        info = repl.sm.fork_session(repl.session_id, new_id)
    repl.say(f"🍴 Forked '{repl.session_id}' into '{new_id}' ({info.message_count} messages)")
    repl.session_id = new_id
    repl.agent.get_session(new_id)


@command("search", "/search <words>", "Search all sessions", raw=True)
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
        from .repl import model_problem

        try:
            await repl.agent.aset_model(args[0])
        except ScratchyError:
            raise  # one line, printed by the loop; the model is unchanged
        except (OSError, ValueError) as exc:
            repl.error(model_problem(exc, args[0], "/model") + " The model is unchanged.")
            return
        repl._warm_up()
    p = repl.agent.provider
    repl.say(f"🧠 Model: {p.name}:{p.model}")
    if args:
        repl.model_notice()


@command("markdown", "/markdown [on|off]", "Render replies as Markdown, or show them as written")
async def _markdown(repl: Repl, args: list[str]) -> None:
    if len(args) > 1 or (args and args[0].lower() not in ("on", "off")):
        _usage(repl, "/markdown")
        return
    if args:
        repl.markdown = args[0].lower() == "on"
    if repl.markdown:
        repl.say(
            "Markdown: on (replies that are clearly Markdown are rendered; /markdown off "
            "shows every reply exactly as written)"
        )
    else:
        repl.say("Markdown: off (replies are shown exactly as written)")


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


from . import memory_repl  # noqa: E402, F401 - registers /memory

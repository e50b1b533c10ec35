"""The REPL's ``/memory`` command: list, search, add and forget memories kept across sessions."""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING, Any

from ..errors import ScratchyError
from .commands import COMMANDS, command
from .render import short

if TYPE_CHECKING:
    from .repl import Repl

USAGE = "/memory [search|add|forget ...]"
ACTIONS = "/memory, /memory search <words>, /memory add <text>, /memory forget <id>"


def _store(repl: Repl) -> Any:
    from ..memory import MemoryStore

    mem = getattr(repl.agent, "memory", None)
    return mem if mem is not None else MemoryStore(repl.sm.store)


def _line(m: Any) -> str:
    """One memory on one line of the terminal: id, text (cut to fit), tags."""
    tags = f"  [{', '.join(m.tags)}]" if m.tags else ""
    width = shutil.get_terminal_size((80, 24)).columns
    room = max(20, width - len(m.id) - 4 - len(tags))
    return f" {m.id}  {short(m.text, room)}{tags}"


@command("memory", USAGE, "List, search, add or forget memories", raw=True)
async def _memory(repl: Repl, args: list[str]) -> None:
    verb, _, rest = (args[0] if args else "").partition(" ")
    verb, rest = verb.lower(), rest.strip()
    mem = _store(repl)
    try:
        if verb in ("", "list", "ls"):
            entries = await asyncio.to_thread(mem.list)
            if not entries:
                repl.say("No memories yet. Add one with /memory add <text>.")
                return
            repl.say(f"🧠 Memories ({len(entries)}):")
            for m in entries[:50]:
                repl.say(_line(m))
            if len(entries) > 50:
                repl.say(f" … {len(entries) - 50} more (scratchy memory list shows them all)")
        elif verb in ("search", "find"):
            if not rest:
                repl.error("Usage: /memory search <words>")
                return
            found = await asyncio.to_thread(mem.recall, rest, limit=10)
            if not found:
                repl.say("No memories match.")
            for m in found:
                repl.say(_line(m))
        elif verb in ("add", "remember"):
            if not rest:
                repl.error("Usage: /memory add <text>")
                return
            entry = await asyncio.to_thread(mem.remember, rest)
            repl.say(f"🧠 Remembered {entry.id}: {short(entry.text, 200)}")
        elif verb in ("forget", "rm", "delete"):
            if not rest or " " in rest:
                repl.error("Usage: /memory forget <id> (ids are shown by /memory)")
                return
            entry = await asyncio.to_thread(mem.resolve, rest)
            await asyncio.to_thread(mem.forget, entry.id)
            repl.say(f"🗑 Forgot {entry.id}: {short(entry.text, 200)}")
        else:
            repl.error(f"Unknown /memory action '{verb}'. Use {ACTIONS}")
    except ScratchyError as exc:
        repl.error(str(exc))


def _exit_last() -> None:
    """Keep /exit (and its aliases) last in /help."""
    exit_cmd = COMMANDS.get("/exit")
    if exit_cmd is None:
        return
    names = [n for n, c in COMMANDS.items() if c.handler is exit_cmd.handler]
    for n in names:
        COMMANDS[n] = COMMANDS.pop(n)


_exit_last()

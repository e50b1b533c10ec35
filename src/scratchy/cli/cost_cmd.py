"""``scratchy sessions cost``: what sessions cost, one by one and in total.

The amounts are the ones :mod:`scratchy.cost` kept in each session's usage totals when its model
calls ended; this command only reads them (it never prices anything again).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from datetime import datetime
from typing import Any

import click

from ..cost import Cost
from ..stores.base import SessionInfo

__all__ = ["cost", "cost_rows"]

_SINCE_HINT = "use a date (2026-12-01), a date and time (2026-12-01 14:30) or an age (7d, 12h, 30m)"


def cost_rows(infos: list[SessionInfo], sort: str = "activity") -> list[dict[str, Any]]:
    """The rows of ``sessions list`` with each session's ``usage`` (tokens) and ``cost`` (see
    :meth:`Cost.as_dict`; both None for a corrupted session); ``sort="cost"``: highest cost
    first, unknown ones and corrupted ones last, ties newest first. A private ``_cost`` key
    holds the :class:`Cost` (None when corrupted)."""
    rows = []
    for info in infos:
        row = info.as_dict()
        usage = info.metadata.get("usage") if info.metadata else None
        usage = usage if isinstance(usage, dict) else {}
        value = None if info.error is not None else Cost.of(usage)
        row["usage"] = None
        if value is not None:
            row["usage"] = {k: int(usage.get(k, 0)) for k in ("input_tokens", "output_tokens")}
        row["cost"] = value.as_dict() if value is not None else None
        row["_cost"] = value
        rows.append(row)
    if sort == "cost":
        rows.sort(key=_by_cost)  # stable: equal costs stay newest first
    return rows


def _by_cost(row: dict[str, Any]) -> tuple[int, int]:
    value: Cost | None = row["_cost"]
    if value is None:
        return (2, 0)
    return (1 if value.status == "unknown" else 0, -value.nano_usd)


def parse_since(text: str) -> datetime:
    """``--since``: a local date, date and time, or an age (``7d``, ``12h``, ``30m``)."""
    from .sessions_cmd import _duration

    value = text.strip()
    if re.fullmatch(r"\d+\s*[dhm]?", value):
        return datetime.now().astimezone() - _duration(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"--since {text!r}: {_SINCE_HINT}") from None
    return when if when.tzinfo is not None else when.astimezone()


def _fit(rows: list[dict[str, str]], width: int) -> list[str]:
    """The table lines: ID and Cost always; Last activity, then Tokens, go when it is narrow."""
    from rich.cells import cell_len

    columns = ["ID", "Last activity", "Calls", "Tokens", "Cost"]
    right = {"Calls", "Tokens"}
    widths = {c: max([cell_len(c)] + [cell_len(r[c]) for r in rows]) for c in columns}
    for drop in ("Last activity", "Tokens", "Calls"):
        if sum(widths[c] for c in columns) + 2 * (len(columns) - 1) <= width:
            break
        columns.remove(drop)

    def line(values: dict[str, str]) -> str:
        parts = []
        for c in columns:
            pad = " " * (widths[c] - cell_len(values[c]))
            parts.append(pad + values[c] if c in right else values[c] + pad)
        return "  ".join(parts).rstrip()

    header = line({c: c for c in columns})
    if not os.environ.get("NO_COLOR"):
        header = click.style(header, bold=True)
    return [header] + [line(r) for r in rows]


@click.command("cost")
@click.argument("session_ids", nargs=-1)
@click.option(
    "--dir",
    "directory",
    default=None,
    help="Session directory or store URL (default: scratchy/session_history).",
)
@click.option(
    "--since",
    default=None,
    metavar="DATE",
    help="Only sessions active since DATE (2026-12-01, '2026-12-01 14:30') or within 7d/12h/30m.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: each session and the total.")
def cost(
    session_ids: tuple[str, ...], directory: str | None, since: str | None, as_json: bool
) -> None:
    """What sessions cost, highest first, and their total.

    Every session, or the SESSION_IDS given; --since keeps those active since DATE, each counted
    whole (costs are kept per session, not per day). A cost is the sum of its model calls'
    prices from the genai-prices package when each call was made; calls it has no price for are
    counted, never guessed: "≥ $0.0123 (2 unpriced)" is a lower bound.

    In a pipe: one tab-separated line per session, no header: id, USD (exact; a lower bound
    when partial), status (complete, partial or unknown), calls, unpriced calls, input tokens,
    output tokens; the total goes to stderr.
    """
    from .sessions_cmd import _check_ids, _reader

    _check_ids(*session_ids)
    cutoff = parse_since(since) if since is not None else None
    sm = _reader(directory)
    infos = sm.store.list() if sm is not None else []
    if session_ids:
        known = {i.id: i for i in infos}
        missing = [sid for sid in session_ids if sid not in known]
        if missing:
            raise click.ClickException(f"No session '{missing[0]}'. See: scratchy sessions list")
        infos = [known[sid] for sid in dict.fromkeys(session_ids)]
    if cutoff is not None:
        infos = [i for i in infos if i.updated_at >= cutoff]
    rows = cost_rows(infos, "cost")
    broken = [r["id"] for r in rows if r["_cost"] is None]
    rows = [r for r in rows if r["_cost"] is not None]
    total = sum((r["_cost"] for r in rows), Cost())
    tokens = {k: sum(r["usage"][k] for r in rows) for k in ("input_tokens", "output_tokens")}
    if as_json:
        out = {
            "since": cutoff.isoformat(timespec="seconds") if cutoff is not None else None,
            "sessions": [
                {k: r[k] for k in ("id", "title", "updated_at", "usage", "cost")} for r in rows
            ],
            "total": {"sessions": len(rows), "usage": tokens, "cost": total.as_dict()},
            "corrupted": broken,
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    noun = "session" if len(rows) == 1 else "sessions"
    where = f" active since {cutoff.strftime('%Y-%m-%d %H:%M')}" if cutoff is not None else ""
    summary = f"Total for {len(rows)} {noun}{where}: {total}"
    if broken:
        summary += f" ({len(broken)} corrupted not counted: {', '.join(broken)})"
    if not sys.stdout.isatty():
        for r in rows:
            c: Cost = r["_cost"]
            usd = r["cost"]["usd"] or "0"
            fields = [r["id"], usd, c.status, str(c.calls), str(c.unpriced_calls)]
            fields += [str(r["usage"]["input_tokens"]), str(r["usage"]["output_tokens"])]
            click.echo("\t".join(fields))
        click.echo(summary, err=True)
        return
    if rows:
        cells = [
            {
                "ID": r["id"],
                "Last activity": r["updated_at"].replace("T", " ")[:16],
                "Calls": str(r["_cost"].calls),
                "Tokens": f"{r['usage']['input_tokens'] + r['usage']['output_tokens']:,}",
                "Cost": r["_cost"].text(short=True),
            }
            for r in rows
        ]
        for text in _fit(cells, shutil.get_terminal_size((80, 24)).columns):
            click.echo(text)
    click.echo(summary)

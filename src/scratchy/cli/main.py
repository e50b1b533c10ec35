"""The ``scratchy`` command: ``scratchy [chat]`` and ``scratchy sessions ...``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .memory_cmd import memory
from .serve_cmd import serve
from .sessions_cmd import cli_message, sessions
from .web_cmd import web


class _Group(click.Group):
    """Print a ScratchyError as one red line, worded for the command line (see
    :func:`~scratchy.cli.sessions_cmd.cli_message`); the traceback with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - reported, then exit 1
            from ..errors import ScratchyError

            if not isinstance(exc, ScratchyError) or ctx.meta.get("debug"):
                raise
            click.secho(f"Error: {cli_message(exc)}", fg="red", err=True)
            ctx.exit(1)


def _chat_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "-s",
                "--session",
                "session_id",
                default="default",
                show_default=True,
                help="Session id to start in (created if new, resumed if stored).",
            ),
            click.option(
                "-m",
                "--model",
                default=None,
                help="provider:model, e.g. openai:gpt-4o-mini (default: $SCRATCHY_MODEL "
                "or the embedded local model).",
            ),
            click.option(
                "--dir",
                "directory",
                default=None,
                help="Session directory or store URL (default: scratchy/session_history).",
            ),
            click.option(
                "--approve",
                type=click.Choice(["ask", "allow", "deny"]),
                default="ask",
                show_default=True,
                help="Policy for tools that change files or run code.",
            ),
            click.option("--no-tools", is_flag=True, help="Start without the built-in tools."),
            click.option(
                "--memory",
                type=click.Choice(["off", "on", "auto"]),
                default="off",
                show_default=True,
                help="Memories across sessions: on (tools and recall), auto (also extraction).",
            ),
            click.option(
                "--no-markdown", is_flag=True, help="Show replies as written, not as Markdown."
            ),
            click.option("--debug", is_flag=True, help="Show tracebacks."),
        ]
    ):
        fn = option(fn)
    return fn


def _check_fake_script(model: str | None) -> None:
    """Read a ``fake:PATH`` script before anything starts, so that a missing or broken file is
    one line at start-up (raises :class:`~scratchy.errors.UsageError`) rather than a failed
    first turn. Other models are resolved by the agent as usual."""
    if model and model.startswith("fake:") and model != "fake:":
        from ..testing import FakeProvider

        FakeProvider.from_spec(model.removeprefix("fake:"))


@click.group(
    cls=_Group,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="scratchy")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Scratchy: an AI agent with named, persistent, resumable sessions.

    With no command, starts the interactive chat (same as `scratchy chat`).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(chat)


@cli.command()
@_chat_options
@click.argument("question", nargs=-1)
@click.pass_context
def chat(
    ctx: click.Context,
    session_id: str = "default",
    model: str | None = None,
    directory: str | None = None,
    approve: str = "ask",
    no_tools: bool = False,
    memory: str = "off",
    no_markdown: bool = False,
    debug: bool = False,
    question: tuple[str, ...] = (),
) -> None:
    """Chat in a session. With QUESTION (or text on stdin), answer once and exit."""
    ctx.meta["debug"] = debug
    _check_fake_script(model or os.environ.get("SCRATCHY_MODEL"))
    from .repl import run_chat

    code = run_chat(
        session_id=session_id,
        model=model,
        directory=directory,
        approve=approve,
        tools=not no_tools,
        debug=debug,
        question=" ".join(question) or None,
        markdown=not no_markdown,
        memory=memory,
    )
    ctx.exit(code)


cli.add_command(sessions)
cli.add_command(memory)
cli.add_command(serve)
cli.add_command(web)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scratchy`` console script."""
    cli.main(args=argv, prog_name="scratchy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

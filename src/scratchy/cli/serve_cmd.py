"""``scratchy serve``: run the HTTP API (``scratchy.server``) under uvicorn; ``serve keygen``."""

from __future__ import annotations

import ipaddress
import json
import os
import sys

import click

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _need_server_packages() -> None:
    from ..errors import MissingDependencyError

    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(package, "server", "scratchy serve") from None


@click.group(invoke_without_command=True)
@click.option(
    "--agent",
    "agent",
    default=None,
    metavar="MODULE:ATTR",
    help="An Agent, or a function returning one, to serve (your tools and prompt).",
)
@click.option(
    "-m", "--model", default=None, help="provider:model for the default agent (without --agent)."
)
@click.option(
    "--memory",
    type=click.Choice(["off", "on", "auto"]),
    default="off",
    show_default=True,
    help="Memory across sessions for the default agent: on (tools), auto (also extraction).",
)
@click.option(
    "--store",
    default=None,
    metavar="DIR|URL",
    help="Session directory or store URL (default: scratchy/session_history).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes."
)
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file of [[keys]] (owner, sha256, role); else $SCRATCHY_API_KEYS.",
)
@click.option("--insecure", is_flag=True, help="Allow a non-loopback address without API keys.")
@click.option(
    "--allow-tool",
    "allow_tool",
    multiple=True,
    metavar="NAME",
    help="Let this tool run without approval (repeatable).",
)
@click.option("--allow-tools", is_flag=True, help="Let every tool run without approval.")
@click.option(
    "--max-body",
    default=1 << 20,
    show_default=True,
    type=click.IntRange(1),
    help="Largest request body in bytes.",
)
@click.option(
    "--busy-wait",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help='Longest wait in seconds for "if_busy": "wait".',
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.pass_context
def serve(ctx: click.Context, agent: str | None, model: str | None, memory: str,
          store: str | None,
          host: str, port: int, workers: int, keys_file: str | None, insecure: bool,
          allow_tool: tuple[str, ...], allow_tools: bool, max_body: int, busy_wait: float,
          log_level: str) -> None:  # fmt: skip
    """Serve sessions over HTTP: a REST API, SSE streaming and an OpenAI-compatible endpoint.

    Examples: `scratchy serve --model openai:gpt-4o-mini`,
    `scratchy serve --agent mybot:make_agent --store postgresql://... --workers 4`.
    """
    if ctx.invoked_subcommand is not None:
        return
    _need_server_packages()
    from ..errors import UsageError
    from ..server.app import SERVE_ENV, options_app

    if agent and memory != "off":
        raise UsageError(
            "--memory applies to the default agent; with --agent, give your Agent memory=True "
            'or memory="auto"'
        )
    options = {
        "agent": agent,
        "model": model,
        "memory": memory,
        "store": store,
        "keys_file": os.path.abspath(keys_file) if keys_file else None,
        "allow_tools": list(allow_tool),
        "allow_all_tools": allow_tools,
        "max_body": max_body,
        "busy_wait": busy_wait,
        "cwd": os.getcwd(),
    }
    app = options_app(options)  # the same checks each worker makes, reported here in one line
    runtime = app.state.runtime
    owners = runtime.keys.owners
    if not owners and not _is_loopback(host) and not insecure:
        raise UsageError(
            f"refusing to serve {host} without API keys: set SCRATCHY_API_KEYS or --keys-file "
            "(see `scratchy serve keygen`), or pass --insecure"
        )
    os.environ[SERVE_ENV] = json.dumps(options)
    shown_host = f"[{host}]" if ":" in host else host
    who = f"{len(owners)} owner{'s' * (len(owners) != 1)}" if owners else "no keys (one owner)"
    click.echo(
        f"Scratchy serving http://{shown_host}:{port} · store {runtime.store.location} · "
        f"{workers} worker{'s' * (workers != 1)} · {who} · docs at /docs"
    )
    sys.stdout.flush()
    _run_uvicorn(host, port, workers, log_level)


def _run_uvicorn(host: str, port: int, workers: int, log_level: str) -> None:
    """``uvicorn.run`` of the worker factory, with TCP_NODELAY on every worker's connections.

    With several workers uvicorn binds the socket itself as ``socket.socket(family)``, whose
    ``proto`` is 0, so asyncio does not set TCP_NODELAY on accepted connections and every
    response waits ~40 ms for a delayed ACK (Nagle). The socket is re-wrapped from its file
    descriptor, which makes ``proto`` IPPROTO_TCP.
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "scratchy.server.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:  # uvicorn logged why (address in use...)
            sys.exit(1)
        return
    from ..server.metrics import MULTIPROC_ENV, fresh_multiproc_dir

    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):  # every worker's /metrics sums all workers
        metrics_dir = fresh_multiproc_dir()
        os.environ[MULTIPROC_ENV] = metrics_dir
    bound = config.bind_socket()
    sock = socket.socket(fileno=bound.detach())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.set_inheritable(True)
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


@serve.command()
@click.argument("owner")
@click.option("--admin", is_flag=True, help="The key sees every owner's sessions.")
def keygen(owner: str, admin: bool) -> None:
    """Print a new API key for OWNER and the lines to add to the keys file."""
    from ..server.auth import keygen as make

    key, entry = make(owner, "admin" if admin else "user")
    click.echo(f"API key for {owner} (shown once; the file keeps only its SHA-256):")
    click.echo(f"  {key}")
    click.echo("Add to the keys file (--keys-file):")
    click.echo(entry.rstrip())

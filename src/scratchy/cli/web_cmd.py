"""``scratchy web``: the browser app over the local sessions, on 127.0.0.1, for one person."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

import click

DEFAULT_PORT = 8766


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def can_open_browser() -> bool:
    """False where no browser could show up (Linux without a display, SSH sessions)."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _open_when_ready(url: str) -> None:
    """Open ``url`` in the browser once the server answers (in a background thread)."""

    def run() -> None:
        import urllib.request
        import webbrowser

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=1):  # noqa: S310 - our URL
                    break
            except OSError:
                time.sleep(0.1)
        webbrowser.open(url)

    threading.Thread(target=run, name="scratchy-web-open", daemon=True).start()


@click.command()
@click.option(
    "--dir",
    "directory",
    default=None,
    type=click.Path(file_okay=False),
    help="Session directory (default: scratchy/session_history, the REPL's).",
)
@click.option("--store", default=None, metavar="URL", help="A store URL instead of a directory.")
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65535),
    help=f"Port on 127.0.0.1 (default {DEFAULT_PORT}, or a free one when it is taken).",
)
@click.option(
    "-m", "--model", default=None, help="provider:model for chats (default: $SCRATCHY_MODEL)."
)
@click.option("--agent", default=None, metavar="MODULE:ATTR", help="Your Agent (tools, prompt).")
@click.option("--no-open", is_flag=True, help="Do not open the browser.")
def web(
    directory: str | None,
    store: str | None,
    port: int | None,
    model: str | None,
    agent: str | None,
    no_open: bool,
) -> None:
    """Browse, search and chat with your local sessions in the browser.

    Serves the browser app on 127.0.0.1 only (no keys: it is yours alone) and opens it.
    Example: `scratchy web --dir scratchy/session_history`.
    """
    from ..errors import UsageError
    from .serve_cmd import _need_server_packages, _run_uvicorn

    if directory and store:
        raise UsageError("give --dir or --store, not both")
    _need_server_packages()
    from ..server.app import SERVE_ENV, options_app

    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
    elif not _port_free(port):
        raise UsageError(f"port {port} on 127.0.0.1 is in use: pick another with --port")
    options = {
        "agent": agent,
        "model": model,
        "store": os.path.abspath(directory) if directory else store,
        "keys_file": None,
        "cwd": os.getcwd(),
    }
    os.environ.pop("SCRATCHY_API_KEYS", None)  # one person on loopback: no keys
    app = options_app(options)
    os.environ[SERVE_ENV] = json.dumps(options)
    url = f"http://127.0.0.1:{port}/"
    click.echo(f"Scratchy web at {url} · sessions in {app.state.runtime.store.location}")
    if no_open or not can_open_browser():
        click.echo("Open that address in your browser (Ctrl+C stops the server).")
    else:
        _open_when_ready(url)
    sys.stdout.flush()
    _run_uvicorn("127.0.0.1", port, 1, "warning")

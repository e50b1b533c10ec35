#!/usr/bin/env python3
"""Start the Scratchy chat: ``python run_agent.py [--session ID] [--model M] [--dir DIR]``."""

import contextlib
import os
import sys


@contextlib.contextmanager
def _no_echo():  # before any import: text typed during start-up is then shown once, by the prompt
    try:
        import termios

        old = termios.tcgetattr(0) if os.isatty(0) else None
    except (ImportError, OSError):
        old = None
    if old is not None:
        quiet = list(old)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(0, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        if old is not None:
            with contextlib.suppress(OSError):
                termios.tcsetattr(0, termios.TCSANOW, old)


if __name__ == "__main__":
    with _no_echo():
        from scratchy.cli.main import main

        main(["chat", *sys.argv[1:]])

#!/usr/bin/env python3
"""Start the Scratchy chat: ``python run_agent.py [--session ID] [--model M] [--dir DIR]``."""

import sys

from scratchy.cli.main import main

if __name__ == "__main__":
    main(["chat", *sys.argv[1:]])

"""The ``scratchy`` command and the interactive REPL (click, prompt_toolkit and rich live here
only, so that ``import scratchy`` stays light)."""

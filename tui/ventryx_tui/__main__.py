"""``python -m ventryx_tui``: the same as the ``ventryx`` command."""

from .cli import main

main()

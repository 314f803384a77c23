"""``python -m ventryx_tui``: the same as the ``ventryx`` command."""

from .app import main

main()

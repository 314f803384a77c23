"""``ventryx [--server URL] [--read-only]``: the command that starts the dashboard."""

from __future__ import annotations

import argparse
import os

from .app import DEFAULT_SERVER, VentryxApp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ventryx", description="The Ventryx terminal dashboard.")
    parser.add_argument(
        "--server",
        help="the server's URL (default: the saved one, else "
        f"{DEFAULT_SERVER}); VENTRYX_SERVER works too",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="hide every action that changes something"
    )
    args = parser.parse_args(argv)
    server = args.server or os.environ.get("VENTRYX_SERVER")
    VentryxApp(server, read_only=args.read_only).run()


if __name__ == "__main__":
    main()

"""The Ventryx terminal dashboard."""


def main() -> None:
    raise SystemExit("The Ventryx dashboard is not built yet.")

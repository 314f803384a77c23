"""The baseline: the Ventryx server itself, plus the bench's unauthenticated routes.

``create_app`` is the server's own ``ventryx_server.app.create_app`` with the same
Settings, then each benchmark module's ``BASELINE_ROUTES`` registered on it: the same
routes, middleware, JSON-body check, error handlers, ``db`` dependency, asyncpg pool,
background tasks (usage recorder, credential memo, event stream listener) and the same
granian settings as ``ventryx-server serve``. A baseline route does its scenario's work
minus the credential, so the difference between the two processes is authentication and
nothing else, by construction rather than by keeping a copy of the server's set-up in
step. (Measured: a baseline route served this way and from a minimal Litestar app with
only the baseline routes answered at the same rate, 0.99, so the size of the app plays
no part in the ratios.)

The runner serves it with ``python bench/baseline_app.py --port N`` and the environment
of the server (DATABASE_URL, VENTRYX_PEPPER) plus BENCH_MODULES, the modules to load.
"""

import argparse
import os
from pathlib import Path

from harness import baseline_routes
from litestar import Litestar

from ventryx_server.app import create_app as create_server_app
from ventryx_server.settings import Settings


def create_app() -> Litestar:
    app = create_server_app(Settings.from_env())
    modules = [name for name in os.environ.get("BENCH_MODULES", "").split(",") if name]
    for route in baseline_routes(modules):
        app.register(route)
    return app


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same call as ventryx_server.cli._serve, so the two differ only in the app.
    Granian(
        "baseline_app:create_app",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        log_access=False,
        working_dir=Path(__file__).resolve().parent,
    ).serve()


if __name__ == "__main__":
    main()

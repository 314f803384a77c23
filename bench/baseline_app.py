"""The baseline: the server's own stack with authentication taken out, and nothing else.

Same ASGI server and settings as ``ventryx-server serve`` (granian, ASGI interface, one
process per ``--workers``), same Litestar pieces (request-id middleware, JSON-body check,
error handlers, the ``db`` dependency) and the same asyncpg pool from
``ventryx_server.db.create_pool`` with the server's Settings. What differs is only what
each benchmark module's ``BASELINE_ROUTES`` leave out: the credential check.

The runner serves it with ``python bench/baseline_app.py --port N`` and the environment
of the server (DATABASE_URL, VENTRYX_PEPPER) plus BENCH_MODULES, the modules to load.
"""

import argparse
import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

from harness import baseline_routes
from litestar import Litestar
from litestar.di import Provide

from ventryx_server.db import create_pool, provide_db
from ventryx_server.errors import EXCEPTION_HANDLERS
from ventryx_server.json_body import require_json_body
from ventryx_server.request_ids import request_id_middleware
from ventryx_server.settings import Settings


def create_app() -> Litestar:
    settings = Settings.from_env()
    modules = [name for name in os.environ.get("BENCH_MODULES", "").split(",") if name]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        app.state.pool = await create_pool(settings)
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(
        route_handlers=baseline_routes(modules),
        dependencies={"db": Provide(provide_db)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_id_middleware],
        before_request=require_json_body,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
    )


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same call as ventryx_server.cli._serve, so the two differ only in the app.
    Granian("baseline_app:create_app", factory=True, address=args.host, port=args.port,
            interface=Interfaces.ASGI, workers=args.workers, log_access=False,
            working_dir=Path(__file__).resolve().parent).serve()


if __name__ == "__main__":
    main()

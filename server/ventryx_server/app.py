"""``create_app``: the only way a Ventryx server application is made."""

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from . import event_stream, logs, metrics, partitions, usage
from .addresses import AddressLimiter
from .auth import CredentialReader
from .auth import _in_background as in_background
from .controllers.api_keys import ApiKeysController, LeakedKeysController
from .controllers.audit_log import AuditLogController
from .controllers.event_rate import EventRateController
from .controllers.events import EventsController
from .controllers.health import HealthController
from .controllers.me import MeController
from .controllers.members import MembersController
from .controllers.organizations import OrganizationController
from .controllers.sessions import SessionsController
from .controllers.workflows import WorkflowsController
from .db import ConnectionsPerCredential, Queries, check_schema, create_pool, provide_db
from .errors import EXCEPTION_HANDLERS
from .http_methods import options_allow_middleware
from .json_body import check_input
from .openapi import complete_document
from .passwords import limit_hashing
from .rate_limits import RateLimiter
from .request_ids import request_id_middleware
from .settings import Settings

# Every endpoint of the API, mounted under /v1 by create_app.
API_HANDLERS = [
    MeController,
    ApiKeysController,
    LeakedKeysController,
    OrganizationController,
    MembersController,
    SessionsController,
    AuditLogController,
    WorkflowsController,
    EventRateController,
    EventsController,
]

# The docs page loads Swagger UI from the swagger-ui-bundle package, served by the server
# itself: /schema renders on a machine without internet access.
DOCS_ASSETS = "/schema/static"
DOCS_PAGE = SwaggerRenderPlugin(
    path="/",
    js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
    css_url=f"{DOCS_ASSETS}/swagger-ui.css",
    standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
    favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>",
)


def create_app(settings: Settings | None = None) -> Litestar:
    owns_logging = settings is None  # a server process; tests keep their own logging
    settings = settings or Settings.from_env()
    queries = Queries.from_dir(settings.sql_dir)
    credentials = CredentialReader(settings.pepper)
    limit_hashing(settings.password_hash_concurrency)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        if owns_logging:  # here, after granian has set its logging up in the worker
            logs.configure(settings.log_format)
        pool = await create_pool(settings)
        try:
            await check_schema(pool, settings.sql_dir)
            app.state.pool = pool
            app.state.usage = usage.UsageRecorder(
                pool, queries, settings.usage_flush_seconds, counting=settings.usage_counting
            )
            app.state.rate_limiter = RateLimiter(
                pool,
                queries,
                settings.rate_limit_sync_seconds,
                acquire_timeout=settings.pool_timeout_seconds,
            )
            async with (
                app.state.usage.running(),
                credentials.forgetting(),
                app.state.rate_limiter.running(),
                in_background(usage.prune_forever(pool, queries, settings)),
            ):
                yield
        finally:
            await pool.close()

    app = Litestar(
        route_handlers=[
            HealthController,
            Router(path="/v1", route_handlers=API_HANDLERS),
            create_static_files_router(
                path=DOCS_ASSETS, directories=[swagger_ui_path], include_in_schema=False
            ),
        ],
        dependencies={"db": Provide(provide_db)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_id_middleware, options_allow_middleware],
        before_request=check_input,
        lifespan=[lifespan, event_stream.lifespan, partitions.lifespan, metrics.serving],
        state=State(
            {
                "settings": settings,
                "queries": queries,
                "metrics": metrics.Metrics(),
                "credentials": credentials,
                "connections_per_credential": ConnectionsPerCredential(
                    settings.credential_connections
                ),
                "address_limits": AddressLimiter(settings.address_limits),
            }
        ),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Ventryx API",
            version="1.0.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key (vtx_live_…, vtx_test_…) "
                        "or a dashboard session token (vtxs_…)",
                    ),
                }
            ),
            security=[{"bearer": []}],
            render_plugins=[DOCS_PAGE],
        ),
    )
    complete_document(app)
    return app

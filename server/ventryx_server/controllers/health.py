"""Liveness and readiness for load balancers and orchestrators: no authentication."""

from litestar import Controller, get
from litestar.datastructures import State

from .. import migrations
from ..errors import ServiceUnavailable


class HealthController(Controller):
    path = ""
    tags = ["Health"]
    include_in_schema = True

    @get("/healthz", operation_id="health", security=[{}])
    async def healthz(self) -> dict[str, str]:
        """The process is alive (does not touch the database)."""
        return {"status": "ok"}

    @get("/readyz", operation_id="ready", security=[{}])
    async def readyz(self, state: State) -> dict[str, str]:
        """The database answers and its schema is current."""
        try:
            async with state.pool.acquire(timeout=2) as db:
                todo = await migrations.pending(db, state.settings.sql_dir)
        except Exception as exc:  # any failure means not ready; its kind says why
            raise ServiceUnavailable(
                f"The database is unavailable ({type(exc).__name__}).", headers={"Retry-After": "1"}
            ) from None
        if todo:
            raise ServiceUnavailable(
                "The database schema is behind; pending migrations: "
                f"{', '.join(m.filename for m in todo)}.",
                code="schema_behind",
                headers={"Retry-After": "5"},
            )
        return {"status": "ready"}

"""Liveness and readiness for load balancers and orchestrators: no authentication."""

from litestar import Controller, Response, get
from litestar.datastructures import State

from .. import migrations


class HealthController(Controller):
    path = ""
    tags = ["Health"]
    include_in_schema = True

    @get("/healthz", operation_id="health", security=[{}])
    async def healthz(self) -> dict[str, str]:
        """The process is alive (does not touch the database)."""
        return {"status": "ok"}

    @get("/readyz", operation_id="ready", security=[{}])
    async def readyz(self, state: State) -> Response[dict[str, str]]:
        """The database answers and its schema is current."""
        try:
            async with state.pool.acquire(timeout=2) as db:
                todo = await migrations.pending(db, state.settings.sql_dir)
        except Exception as exc:  # any failure means not ready; the reason is logged
            return Response({"status": "unavailable", "reason": type(exc).__name__},
                            status_code=503, headers={"Retry-After": "1"})
        if todo:
            return Response({"status": "schema_behind",
                             "pending": ", ".join(m.filename for m in todo)}, status_code=503)
        return Response({"status": "ready"})

"""API keys: an authenticated single-row read, GET /v1/me, creating a key, and the same
read without auth."""

import asyncpg
from harness import BenchContext, Scenario
from litestar import get

from ventryx_server.db import Queries
from ventryx_server.errors import NotFound
from ventryx_server.keys import to_api_key
from ventryx_server.settings import Settings
from ventryx_shared.api_keys import ApiKey
from ventryx_shared.common import Data

# Called the way the server calls its own statements (db.Queries).
_QUERIES = Queries(
    """
-- name: get-api-key-row^
-- sql/queries/api_keys.sql's get-api-key minus the caller: the key and its usage columns.
SELECT k.*, u.*
FROM api_keys k
LEFT JOIN LATERAL api_key_usage(k.org_id, k.id, k.rotated_at, k.rotated_to, k.last_used_at,
                                :quiet_seconds) u ON true
WHERE k.org_id = :org_id AND k.id = :id;
"""
)
QUIET_SECONDS = Settings.traffic_quiet_seconds  # the default, as the bench server runs

BASELINE = "baseline: api_keys row, no auth"
READ = "GET /v1/api-keys/{id}"
CREATE = "POST /v1/api-keys"
# Printed after the table: each first scenario's server CPU per request over the second's.
# Creating a key (a write, its audit entry, the quota) should cost at most twice a read.
CPU_COMPARISONS = [(CREATE, READ)]


@get("/baseline/api-keys/{org_id:str}/{key_id:str}")
async def api_key_without_auth(db: asyncpg.Connection, org_id: str, key_id: str) -> Data[ApiKey]:
    """The server's GET /v1/api-keys/{id} minus the credential: same row, same usage
    columns, same JSON."""
    row = await _QUERIES.get_api_key_row(db, org_id=org_id, id=key_id, quiet_seconds=QUIET_SECONDS)
    if row is None:
        raise NotFound(f"No such API key: '{key_id}'", param="id")
    return Data(to_api_key(row))


BASELINE_ROUTES = [api_key_without_auth]


async def prepare(ctx: BenchContext) -> list[Scenario]:
    # A key that may only read keys: the scope check is part of what is measured.
    _, reader = await ctx.create_key(["api-keys:read"], name="bench reader")
    _, creator = await ctx.create_key(["api-keys:write", "workflows:read"], name="bench creator")
    return [
        Scenario(
            BASELINE,
            "baseline",
            f"/baseline/api-keys/{ctx.org_id}/{ctx.admin_key_id}",
            token=reader,
        ),
        Scenario(
            READ, "server", f"/v1/api-keys/{ctx.admin_key_id}", token=reader, baseline=BASELINE
        ),
        # Every request adds a key (run.py lifts the organization's quota), so the count
        # behind the quota check grows through the run as it would in a busy organization.
        Scenario(
            CREATE,
            "server",
            "/v1/api-keys",
            method="POST",
            token=creator,
            body=b'{"name": "bench created", "scopes": ["workflows:read"]}',
            baseline=BASELINE,
            expect_status=201,
        ),
        Scenario("GET /v1/me", "server", "/v1/me", token=reader, baseline=BASELINE),
    ]

"""Workflows: an authenticated GET /v1/workflows/{id} next to the same read without auth."""

import asyncpg
from harness import BenchContext, Scenario
from litestar import get

from ventryx_server.controllers.workflows import to_workflow
from ventryx_server.db import Queries
from ventryx_server.errors import NotFound
from ventryx_shared.common import Data
from ventryx_shared.workflows import Workflow

_QUERIES = Queries(
    """
-- name: get-workflow-row^
SELECT w.* FROM workflows w
WHERE w.org_id = :org_id AND w.environment = :environment AND w.id = :id;
"""
)

BASELINE = "baseline: workflows row, no auth"

STEPS = [
    {
        "name": "reserve stock",
        "action": "http.request",
        "config": {"url": "https://stock.example/reserve", "method": "POST"},
    },
    {"name": "notify sales", "action": "slack.send", "config": {"channel": "#sales"}},
    {"name": "send receipt", "action": "email.send", "config": {"template": "receipt"}},
]


@get("/baseline/workflows/{org_id:str}/{workflow_id:str}")
async def workflow_without_auth(
    db: asyncpg.Connection, org_id: str, workflow_id: str
) -> Data[Workflow]:
    """GET /v1/workflows/{id} minus the credential: same row, same JSON."""
    row = await _QUERIES.get_workflow_row(db, org_id=org_id, environment="live", id=workflow_id)
    if row is None:
        raise NotFound(f"No such workflow: '{workflow_id}'", param="id")
    return Data(to_workflow(row))


BASELINE_ROUTES = [workflow_without_auth]


async def prepare(ctx: BenchContext) -> list[Scenario]:
    response = await ctx.api.post(
        "/v1/workflows",
        headers={"Authorization": f"Bearer {ctx.admin_key}"},
        json={
            "name": "bench read target",
            "trigger": "order.*",
            "description": "Read by the benchmark",
            "steps": STEPS,
        },
    )
    if response.status_code != 201:
        raise RuntimeError(f"could not create the bench workflow: HTTP {response.status_code}")
    workflow_id = response.json()["data"]["id"]
    _, reader = await ctx.create_key(["workflows:read"], name="bench workflow reader")
    return [
        Scenario(
            BASELINE, "baseline", f"/baseline/workflows/{ctx.org_id}/{workflow_id}", token=reader
        ),
        Scenario(
            "GET /v1/workflows/{id}",
            "server",
            f"/v1/workflows/{workflow_id}",
            token=reader,
            baseline=BASELINE,
        ),
    ]

"""The caller's organization: ``GET /v1/org``, renaming it, its default rate limit and
how long its events are kept."""

import asyncpg
from litestar import Controller, get, patch
from litestar.params import JSONBody
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.common import Data
from ventryx_shared.organizations import (
    EventRetention,
    OrganizationDetails,
    OrganizationUpdate,
    Quotas,
)
from ventryx_shared.rate_limits import RateLimit, rate_limit_of

from .. import audit
from ..auth import authorized, caller_params, lock_caller, require_credential
from ..db import Db
from ..errors import UnprocessableEntity
from ..request_type import AppRequest

ADMIN = {"scope": "org:admin"}


def to_organization(row: asyncpg.Record) -> OrganizationDetails:
    return OrganizationDetails(
        id=row["id"],
        name=row["name"],
        default_rate_limit=RateLimit(
            requests=row["default_rate_limit_requests"],
            window_seconds=row["default_rate_limit_window_seconds"],
        ),
        quotas=Quotas(active_api_keys=row["max_active_api_keys"], workflows=row["max_workflows"]),
        event_retention_days=EventRetention(
            live=row["event_retention_days_live"], test=row["event_retention_days_test"]
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _changes(row: asyncpg.Record) -> dict[str, object]:
    """What an update changed, from/to, for the audit log."""
    before_limit = rate_limit_of(
        row["previous_rate_limit_requests"], row["previous_rate_limit_window_seconds"]
    )
    after_limit = rate_limit_of(
        row["default_rate_limit_requests"], row["default_rate_limit_window_seconds"]
    )
    changes: dict[str, object] = {}
    if row["previous_name"] != row["name"]:
        changes["name"] = {"from": row["previous_name"], "to": row["name"]}
    if before_limit != after_limit:
        changes["default_rate_limit"] = {"from": before_limit, "to": after_limit}
    for environment in ("live", "test"):
        before, after = (
            row[f"previous_retention_days_{environment}"],
            row[f"event_retention_days_{environment}"],
        )
        if before != after:
            changes[f"event_retention_days.{environment}"] = {"from": before, "to": after}
    return changes


class OrganizationController(Controller):
    path = "/org"
    tags = ["Organization"]
    before_request: BeforeRequestHookHandler = require_credential

    # Any valid credential may read its own organization's name, as GET /v1/me shows it.
    @get("/", operation_id="getOrganization", opt={"scope": None})
    async def get_organization(self, request: AppRequest, db: Db) -> Data[OrganizationDetails]:
        """The caller's organization, its default rate limit and its quotas."""
        row = await request.app.state.queries.get_organization(db, **caller_params(request))
        return Data(to_organization(await authorized(db, request, row)))

    @patch("/", operation_id="updateOrganization", opt=ADMIN)
    async def update_organization(
        self, request: AppRequest, db: Db, data: JSONBody[OrganizationUpdate]
    ) -> Data[OrganizationDetails]:
        """Rename the organization, change its default rate limit or how many days each
        environment's events are kept."""
        retention = data.event_retention_days
        if (
            data.name is None
            and data.default_rate_limit is None
            and (retention is None or (retention.live is None and retention.test is None))
        ):
            raise UnprocessableEntity(
                "Send name, default_rate_limit, event_retention_days or several.",
                code="empty_update",
            )
        limit = data.default_rate_limit
        async with db.transaction():
            caller = await lock_caller(db, request)
            row = await request.app.state.queries.update_organization(
                db,
                org_id=caller.org_id,
                name=data.name,
                rate_limit_requests=limit and limit.requests,
                rate_limit_window_seconds=limit and limit.window_seconds,
                retention_days_live=retention and retention.live,
                retention_days_test=retention and retention.test,
            )
            await audit.record_change(
                db,
                request,
                caller,
                "organization.updated",
                caller.org_id,
                caller.environment,
                **_changes(row),
            )
        return Data(to_organization(row))

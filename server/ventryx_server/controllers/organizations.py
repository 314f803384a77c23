"""The caller's organization: ``GET /v1/org`` and renaming it."""

import asyncpg
import msgspec
from litestar import Controller, Request, get, patch
from litestar.params import JSONBody

from ventryx_shared.common import Data
from ventryx_shared.organizations import OrganizationDetails, OrganizationUpdate

from .. import audit
from ..auth import authorized, caller_params, lock_caller, require_credential
from ..db import Db

ADMIN = {"scope": "org:admin"}


def to_organization(row: asyncpg.Record) -> OrganizationDetails:
    return msgspec.convert({f: row[f] for f in OrganizationDetails.__struct_fields__},
                           OrganizationDetails)


class OrganizationController(Controller):
    path = "/v1/org"
    tags = ["Organization"]
    before_request = require_credential

    # Any valid credential may read its own organization's name, as GET /v1/me shows it.
    @get("/", operation_id="getOrganization", opt={"scope": None})
    async def get_organization(self, request: Request,
                               db: Db) -> Data[OrganizationDetails]:
        """The caller's organization."""
        row = await request.app.state.queries.get_organization(db, **caller_params(request))
        return Data(to_organization(await authorized(db, request, row)))

    @patch("/", operation_id="updateOrganization", opt=ADMIN)
    async def update_organization(self, request: Request, db: Db,
                                  data: JSONBody[OrganizationUpdate]) -> Data[OrganizationDetails]:
        """Rename the organization."""
        async with db.transaction():
            caller = await lock_caller(db, request)
            row = await request.app.state.queries.rename_organization(
                db, org_id=caller.org_id, name=data.name)
            await audit.record(db, request, org_id=caller.org_id, actor_id=caller.actor_id,
                               action="organization.updated", target_type="organization",
                               target_id=caller.org_id, environment=caller.environment,
                               details={"name": {"from": row["previous_name"], "to": data.name}})
        return Data(to_organization(row))

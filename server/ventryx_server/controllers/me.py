"""``GET /v1/me``: the caller's organization, environment, scopes and credential."""

from litestar import Controller, get
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.common import Data
from ventryx_shared.me import Caller, Organization

from ..auth import authorized, caller_params, credential_of, require_credential
from ..db import Db
from ..request_type import AppRequest


class MeController(Controller):
    path = "/me"
    tags = ["Identity"]
    before_request: BeforeRequestHookHandler = require_credential

    @get("/", operation_id="getMe", opt={"scope": None})
    async def get_me(self, request: AppRequest, db: Db) -> Data[Caller]:
        """Who am I: any valid credential may ask."""
        row = await request.app.state.queries.get_me(db, **caller_params(request))
        row = await authorized(db, request, row)
        return Data(
            Caller(
                credential_type=credential_of(request).kind,
                credential_id=row["credential_id"],
                member_id=row["member_id"],
                organization=Organization(id=row["org_id"], name=row["org_name"]),
                environment=row["environment"],
                scopes=list(row["scopes"]),
            )
        )

"""``GET /v1/audit-log``: who did what, newest first. Append-only: nothing here changes it."""

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.params import Parameter
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.audit_log import AuditEntry
from ventryx_shared.common import Page

from ..auth import require_credential
from ..db import Db
from ..errors import InvalidRequest
from ..request_type import AppRequest
from .pagination import Limit, StartingAfter, cursor
from .reads import authorized_page

ADMIN = {"scope": "org:admin"}
Filter = Annotated[str | None, Parameter(max_length=100)]


def to_audit_entry(row: asyncpg.Record) -> AuditEntry:
    fields = {f: row[f] for f in AuditEntry.__struct_fields__ if f != "details"}
    return AuditEntry(**fields, details=msgspec.json.decode(row["details"]))


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidRequest(
            f"{name} needs a time zone, as in 2026-04-02T10:00:00Z.",
            code="invalid_parameter",
            param=name,
        )
    return value


class AuditLogController(Controller):
    path = "/audit-log"
    tags = ["Audit log"]
    before_request: BeforeRequestHookHandler = require_credential

    @get("/", operation_id="listAuditLog", opt=ADMIN)
    async def list_audit_log(
        self,
        request: AppRequest,
        db: Db,
        limit: Limit = 20,
        starting_after: StartingAfter = None,
        actor: Annotated[Filter, Parameter(description="An actor id: mem_… or key_…")] = None,
        action: Annotated[
            Filter,
            Parameter(description="An action (member.created), or a family of them (member.*)"),
        ] = None,
        target: Annotated[Filter, Parameter(description="A target's id")] = None,
        since: Annotated[datetime | None, Parameter(description="From this time on")] = None,
        until: Annotated[datetime | None, Parameter(description="Before this time")] = None,
    ) -> Page[AuditEntry]:
        """List audit entries, newest first, filtered by actor, action, target and time."""
        action_prefix: str | None = None
        if action is not None and action.endswith(".*"):
            action_prefix, action = action[:-1], None
        return await authorized_page(
            db,
            request,
            request.app.state.queries.list_audit_entries,
            to_audit_entry,
            limit,
            actor=actor,
            action=action,
            action_prefix=action_prefix,
            target=target,
            since=_aware("since", since),
            until=_aware("until", until),
            starting_after=cursor("aud", starting_after),
        )

"""Audit entries, written by the transaction that makes the change they record."""

from typing import Any

import asyncpg
import msgspec

from ventryx_shared.ids import new_id

from .addresses import client_address
from .errors import request_id_of
from .request_type import AppRequest


async def record(db: asyncpg.Connection, request: AppRequest, *, org_id: str, actor_id: str,
                 action: str, target_type: str, target_id: str | None,
                 environment: str | None, details: dict[str, Any] | None = None) -> None:
    client = client_address(request.scope) if request.client else None
    await request.app.state.queries.insert_audit_entry(
        db, org_id=org_id, id=new_id("aud"), actor_id=actor_id, action=action,
        target_type=target_type, target_id=target_id, environment=environment,
        request_id=request_id_of(request), client_address=client,
        details=msgspec.json.encode(details or {}).decode())

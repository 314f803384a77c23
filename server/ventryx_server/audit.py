"""Audit entries, written by the transaction that makes the change they record."""

from typing import Any

import asyncpg
import msgspec

from ventryx_shared.ids import new_id

from .addresses import client_address
from .auth import AuthorizedCaller
from .errors import request_id_of
from .request_type import AppRequest


async def record(
    db: asyncpg.Connection,
    request: AppRequest,
    *,
    org_id: str,
    actor_id: str,
    action: str,
    target_type: str,
    target_id: str | None,
    environment: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    await request.app.state.queries.insert_audit_entry(
        db,
        org_id=org_id,
        id=new_id("aud"),
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        environment=environment,
        details=encode_details(details),
        **origin(request),
    )


async def record_change(
    db: asyncpg.Connection,
    request: AppRequest,
    caller: AuthorizedCaller,
    action: str,
    target_id: str,
    environment: str | None,
    **details: Any,
) -> None:
    """A caller's change to one resource; its type is the action's first word
    (``workflow.updated``: a workflow)."""
    await record(
        db,
        request,
        org_id=caller.org_id,
        actor_id=caller.actor_id,
        action=action,
        target_type=action.split(".", 1)[0],
        target_id=target_id,
        environment=environment,
        details=details or None,
    )


def encode_details(details: dict[str, Any] | None) -> str:
    return msgspec.json.encode(details or {}).decode()


def origin(request: AppRequest) -> dict[str, str | None]:
    """Where a change came from, as every audit entry records it."""
    return {
        "request_id": request_id_of(request),
        "client_address": client_address(request.scope) if request.client else None,
    }

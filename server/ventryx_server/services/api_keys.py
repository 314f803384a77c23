"""API keys' rules, and the one way a key comes to exist: minted here and added by
``add_api_key`` (sql/migrations/0022_add_api_key.up.sql), which checks the quota, claims
the Idempotency-Key and writes the audit entry in the same statement. Creating a key
(one round trip), rotating one and bootstrapping an organization all go through it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Response

from ventryx_shared.api_keys import ApiKeyRotated
from ventryx_shared.ids import new_id
from ventryx_shared.scopes import grants_all

from .. import audit, idempotency, quotas
from ..auth import AuthorizedCaller, authorized, caller_params
from ..db import Queries
from ..errors import Conflict, PermissionDenied, UnprocessableEntity, no_such
from ..keys import NewKey, mint, status_of, to_api_key, to_created
from ..request_type import AppRequest


@dataclass(frozen=True, slots=True)
class KeyFields:
    """What a new key holds."""

    name: str
    environment: str
    scopes: Sequence[str]
    expires_at: datetime | None = None
    rate_limit_requests: int | None = None
    rate_limit_window_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class AddedKey:
    row: asyncpg.Record
    token: str

    def __repr__(self) -> str:
        return f"AddedKey(id={self.row['id']!r})"


def check_no_duplicate_scopes(scopes: Sequence[str]) -> None:
    if len(set(scopes)) != len(scopes):
        raise UnprocessableEntity(
            "scopes lists a scope more than once.", code="duplicate_scope", param="scopes"
        )


def check_grantable(caller_scopes: Sequence[str], scopes: Sequence[str]) -> None:
    """A key never holds a scope its creator (or editor) lacks."""
    if not grants_all(list(caller_scopes), scopes):
        missing = sorted(set(scopes) - set(caller_scopes))
        raise PermissionDenied(
            f"A key cannot grant scopes its creator lacks: {', '.join(missing)}.",
            code="scope_escalation",
            param="scopes",
        )


def check_may_act_on(caller_scopes: Sequence[str], key: asyncpg.Record) -> None:
    """Changing, rotating or revoking a key takes every scope it holds: a lesser key must
    not be able to take an org:admin key offline any more than widen itself."""
    if not grants_all(list(caller_scopes), list(key["scopes"])):
        missing = sorted(set(key["scopes"]) - set(caller_scopes))
        raise PermissionDenied(
            f"Acting on this key needs every scope it holds; this credential lacks: "
            f"{', '.join(missing)}.",
            code="scope_escalation",
        )


def environment_escalation() -> PermissionDenied:
    return PermissionDenied(
        "A test credential cannot create or manage live keys.",
        code="environment_escalation",
        param="environment",
    )


def _key_params(key_id: str, new_key: NewKey, fields: KeyFields) -> dict[str, Any]:
    return {
        "id": key_id,
        "key_lookup_id": new_key.lookup_id,
        "key_secret_hash": new_key.secret_hash,
        "key_suffix": new_key.key_suffix,
        "name": fields.name,
        "key_environment": fields.environment,
        "scopes": fields.scopes,
        "expires_at": fields.expires_at,
        "rate_limit_requests": fields.rate_limit_requests,
        "rate_limit_window_seconds": fields.rate_limit_window_seconds,
    }


def _outcome(
    row: asyncpg.Record,
    caller_scopes: Sequence[str],
    fields: KeyFields,
    request_fingerprint: bytes | None,
) -> Response[Any] | None:
    """None for a key added; the response to replay; or the refusal add_api_key chose,
    worded by the same checks that guard changing a key."""
    outcome = row["outcome"]
    if outcome == "created":
        return None
    if outcome == "replay":  # only when the request carried an Idempotency-Key
        return idempotency.replay(
            request_fingerprint or b"",
            row["replay_fingerprint"],
            row["replay_status"],
            row["replay_body"],
        )
    if outcome == "quota_exceeded":
        raise quotas.exceeded("active_api_keys", row["quota"], row["used"])
    if outcome == "environment_escalation":
        raise environment_escalation()
    if outcome == "scope_escalation":
        check_grantable(caller_scopes, fields.scopes)
    raise RuntimeError(f"add_api_key answered {outcome!r}, which the server does not know")


async def create_key(
    db: asyncpg.Connection, request: AppRequest, fields: KeyFields, audit_details: dict[str, Any]
) -> AddedKey | Response[Any]:
    """POST /v1/api-keys as one statement: the caller's lock, the key, its audit entry.
    With an Idempotency-Key the caller runs it in the transaction that then stores the
    response (idempotency.remember), and a retry gets the stored response back."""
    check_no_duplicate_scopes(fields.scopes)
    key = idempotency.idempotency_key(request)
    request_fingerprint = None if key is None else await idempotency.fingerprint(request)
    new_key = mint(fields.environment, request.app.state.settings.pepper)
    row = await request.app.state.queries.create_api_key(
        db,
        **caller_params(request),
        **_key_params(new_id("key"), new_key, fields),
        idempotency_key=key,
        fingerprint=request_fingerprint,
        audit_id=new_id("aud"),
        audit_details=audit.encode_details(audit_details),
        **audit.origin(request),
    )
    row = await authorized(db, request, row)
    replay = _outcome(row, row["caller_scopes"], fields, request_fingerprint)
    return replay or AddedKey(row, new_key.token)


async def add_key(
    db: asyncpg.Connection,
    queries: Queries,
    pepper: bytes,
    *,
    org_id: str,
    created_by: str,
    caller_environment: str,
    caller_scopes: Sequence[str],
    fields: KeyFields,
    retiring_id: str | None = None,
) -> AddedKey:
    """A key for a caller already authorized (a rotation's successor, inside its
    transaction) or for an organization being made. ``retiring_id``: a key this
    transaction retires, which the quota does not count."""
    new_key = mint(fields.environment, pepper)
    row = await queries.add_api_key(
        db,
        org_id=org_id,
        created_by=created_by,
        caller_environment=caller_environment,
        caller_scopes=list(caller_scopes),
        **_key_params(new_id("key"), new_key, fields),
        retiring_id=retiring_id,
    )
    _outcome(row, caller_scopes, fields, None)
    return AddedKey(row, new_key.token)


async def stop_key_writes(db: asyncpg.Connection, request: AppRequest, key_id: str) -> None:
    """Inside the transaction, before lock_caller: waits for the writes in flight with the
    key and holds back new ones until commit, which no stream of them can overtake (see
    sql/migrations/0014_fair_revocation.up.sql); the FOR UPDATE of locked_key follows."""
    await request.app.state.queries.stop_api_key_writes(db, **caller_params(request), id=key_id)


async def locked_key(
    db: asyncpg.Connection, request: AppRequest, caller: AuthorizedCaller, key_id: str
) -> asyncpg.Record:
    """The key, locked until commit; 404 for one of another organization or one a test
    caller may not see, with the words of one that never existed."""
    row: asyncpg.Record | None = await request.app.state.queries.lock_api_key(
        db, org_id=caller.org_id, id=key_id, caller_environment=caller.environment
    )
    if row is None:
        raise no_such("API key", key_id)
    return row


async def rotate_key(
    db: asyncpg.Connection,
    request: AppRequest,
    caller: AuthorizedCaller,
    old: asyncpg.Record,
    grace_seconds: int,
) -> ApiKeyRotated | Response[Any]:
    """Inside the transaction that locked the caller and the old key: the successor, with
    the old key's name, scopes, environment, rate limit and end; the old key expires after
    the grace period; or, for a retry with the same Idempotency-Key, the first response
    (before the checks below, which the first rotation itself makes fail)."""
    if replay := await idempotency.claim(db, request, caller.org_id):
        return replay
    if old["revoked_at"] is not None:
        raise Conflict("A revoked key cannot be rotated.", code="key_revoked")
    if old["rotated_to"] is not None:
        raise Conflict(
            f"This key was already rotated to {old['rotated_to']}.", code="key_already_rotated"
        )
    if status_of(old) == "expired":
        raise Conflict("An expired key cannot be rotated; create a new key.", code="key_expired")
    state = request.app.state
    added = await add_key(
        db,
        state.queries,
        state.settings.pepper,
        org_id=caller.org_id,
        created_by=caller.actor_id,
        caller_environment=caller.environment,
        caller_scopes=caller.scopes,
        # Without a grace period the old key stops counting as it is replaced.
        retiring_id=old["id"] if grace_seconds == 0 else None,
        fields=KeyFields(
            name=old["name"],
            environment=old["environment"],
            scopes=list(old["scopes"]),
            # A successor never outlives its predecessor's own end.
            expires_at=old["expires_at"],
            rate_limit_requests=old["rate_limit_requests"],
            rate_limit_window_seconds=old["rate_limit_window_seconds"],
        ),
    )
    retired = await state.queries.retire_rotated_api_key(
        db,
        org_id=caller.org_id,
        id=old["id"],
        grace_seconds=float(grace_seconds),
        successor_id=added.row["id"],
    )
    await audit.record_change(
        db,
        request,
        caller,
        "api_key.rotated",
        old["id"],
        old["environment"],
        successor=added.row["id"],
        grace_period_seconds=grace_seconds,
    )
    return ApiKeyRotated(
        **msgspec.structs.asdict(to_created(added.row, added.token)),
        previous_key=to_api_key(retired),
    )

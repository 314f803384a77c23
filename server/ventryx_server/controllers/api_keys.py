"""API keys: create, list, get, update, revoke, rotate, and the leaked-key kill switch."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromQuery, JSONBody, Parameter
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.api_keys import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRotate,
    ApiKeyRotated,
    ApiKeyUpdate,
    LeakedKeyReport,
)
from ventryx_shared.common import Accepted, Data, Environment, Page
from ventryx_shared.ids import new_id
from ventryx_shared.scopes import grants_all
from ventryx_shared.tokens import parse_token
from ventryx_shared.usage import Granularity, KeyUsage, UsageBucket

from .. import audit, idempotency, quotas, usage
from ..addresses import limit_by_address
from ..auth import Caller, authorized, caller_params, hash_secret, lock_caller, require_credential
from ..db import Db
from ..errors import Conflict, NotFound, PermissionDenied, UnprocessableEntity
from ..keys import mint, status_of, to_api_key, to_created
from ..openapi import NO_STORE
from ..request_type import AppRequest
from .pagination import Limit, StartingAfter, cursor, page

READ = {"scope": "api-keys:read"}
WRITE = {"scope": "api-keys:write"}
KeyId = Annotated[str, Parameter(description="The key's id, key_…", max_length=64)]


def _no_such_key(key_id: str) -> NotFound:
    # The same words for a key of another organization, another environment, or none.
    return NotFound(f"No such API key: '{key_id[:64]}'", param="id")


def _check_scopes(caller: Caller, scopes: Sequence[str]) -> None:
    if len(set(scopes)) != len(scopes):
        raise UnprocessableEntity("scopes lists a scope more than once.", code="duplicate_scope",
                                  param="scopes")
    if not grants_all(caller.scopes, scopes):
        missing = sorted(set(scopes) - set(caller.scopes))
        raise PermissionDenied(
            f"A key cannot grant scopes its creator lacks: {', '.join(missing)}.",
            code="scope_escalation", param="scopes")


def _check_may_act_on(caller: Caller, key: asyncpg.Record) -> None:
    """Changing, rotating or revoking a key takes every scope it holds: a lesser key must
    not be able to take an org:admin key offline any more than widen itself."""
    if not grants_all(caller.scopes, list(key["scopes"])):
        missing = sorted(set(key["scopes"]) - set(caller.scopes))
        raise PermissionDenied(
            f"Acting on this key needs every scope it holds; this credential lacks: "
            f"{', '.join(missing)}.", code="scope_escalation")


def _check_environment(caller: Caller, environment: str) -> None:
    if caller.environment == "test" and environment == "live":
        raise PermissionDenied("A test credential cannot create or manage live keys.",
                               code="environment_escalation", param="environment")


async def _stop_key_writes(db: Db, request: AppRequest, key_id: str) -> None:
    """Inside the transaction, before lock_caller: waits for the writes in flight with the
    key and holds back new ones until commit, which no stream of them can overtake (see
    sql/migrations/0014_fair_revocation.up.sql); the FOR UPDATE of _locked_key follows."""
    await request.app.state.queries.stop_api_key_writes(db, **caller_params(request), id=key_id)


async def _locked_key(db: Db, request: AppRequest, caller: Caller,
                      key_id: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await request.app.state.queries.lock_api_key(
        db, org_id=caller.org_id, id=key_id, caller_environment=caller.environment)
    if row is None:
        raise _no_such_key(key_id)
    return row


async def _audit(db: asyncpg.Connection, request: AppRequest, caller: Caller, action: str,
                 key: asyncpg.Record, **details: Any) -> None:
    await audit.record(db, request, org_id=caller.org_id, actor_id=caller.actor_id,
                       action=action, target_type="api_key", target_id=key["id"],
                       environment=key["environment"], details=details or None)


class ApiKeysController(Controller):
    path = "/v1/api-keys"
    tags = ["API keys"]
    before_request: BeforeRequestHookHandler = require_credential

    @post("/", operation_id="createApiKey", opt=WRITE, status_code=201,
          cache_control=NO_STORE)
    async def create_api_key(self, request: AppRequest, db: Db,
                             data: JSONBody[ApiKeyCreate]) -> Response[Data[ApiKeyCreated]]:
        """Create a key; the response is the only one that ever carries the key itself."""
        if data.expires_at is not None and (
            data.expires_at.tzinfo is None or data.expires_at <= datetime.now(UTC)
        ):
            raise UnprocessableEntity("expires_at must be a future time with a time zone.",
                                      param="expires_at")
        async with db.transaction():
            caller = await lock_caller(db, request)
            environment = data.environment or caller.environment
            _check_environment(caller, environment)
            _check_scopes(caller, data.scopes)
            if replay := await idempotency.claim(db, request, caller.org_id):
                return replay
            await quotas.check_api_keys(db, request, caller)
            new_key = mint(environment, request.app.state.settings.pepper)
            limit = data.rate_limit
            row = await request.app.state.queries.insert_api_key(
                db, org_id=caller.org_id, id=new_id("key"), lookup_id=new_key.lookup_id,
                secret_hash=new_key.secret_hash, key_suffix=new_key.key_suffix, name=data.name,
                environment=environment, scopes=data.scopes, created_by=caller.actor_id,
                expires_at=data.expires_at, rate_limit_requests=limit and limit.requests,
                rate_limit_window_seconds=limit and limit.window_seconds)
            await _audit(db, request, caller, "api_key.created", row, scopes=data.scopes,
                         **({"rate_limit": limit} if limit else {}))
            await idempotency.remember(db, request, caller.org_id, 201,
                                       msgspec.json.encode(Data(to_created(row, None))))
        return Response(Data(to_created(row, new_key.token)), status_code=201)

    @get("/", operation_id="listApiKeys", opt=READ)
    async def list_api_keys(
        self, request: AppRequest, db: Db, limit: Limit = 20,
        starting_after: StartingAfter = None,
        status: FromQuery[Literal["active", "expired", "revoked"] | None] = None,
        environment: FromQuery[Environment | None] = None,
        unused_for: Annotated[str | None, Parameter(
            description="Only keys without a successful request for this long (30d, 12h, "
                        "90m); a key never used counts from its creation",
            pattern=r"^[1-9][0-9]{0,5}[mhd]$", max_length=16)] = None,
    ) -> Page[ApiKey]:
        """List keys, newest first; never the key itself."""
        unused_seconds = None if unused_for is None else usage.parse_duration(unused_for,
                                                                              "unused_for")
        rows = await request.app.state.queries.list_api_keys(
            db, **caller_params(request), key_environment=environment, status=status,
            starting_after=cursor("key", starting_after), limit=limit + 1,
            unused_seconds=unused_seconds,
            quiet_seconds=request.app.state.settings.traffic_quiet_seconds)
        await authorized(db, request, rows[0] if rows else None)
        items, has_more = page([to_api_key(r) for r in rows if r["id"] is not None], limit)
        return Page(items, has_more)

    @get("/{key_id:str}", operation_id="getApiKey", opt=READ)
    async def get_api_key(self, request: AppRequest, db: Db,
                          key_id: KeyId) -> Data[ApiKey]:
        """Retrieve one key, redacted."""
        row = await request.app.state.queries.get_api_key(
            db, **caller_params(request), id=key_id,
            quiet_seconds=request.app.state.settings.traffic_quiet_seconds)
        row = await authorized(db, request, row)
        if row["id"] is None:
            raise _no_such_key(key_id)
        return Data(to_api_key(row))

    @get("/{key_id:str}/usage", operation_id="getApiKeyUsage", opt=READ)
    async def get_api_key_usage(
        self, request: AppRequest, db: Db, key_id: KeyId,
        since: Annotated[datetime | None, Parameter(
            description="Start (RFC 3339 with a time zone), rounded down to a bucket; "
                        "before until, at most 1,440 buckets earlier; default: an hour, a "
                        "day or 30 days before until")] = None,
        until: Annotated[datetime | None, Parameter(
            description="End, exclusive (default: now)")] = None,
        granularity: Granularity = "hour",
    ) -> Data[KeyUsage]:
        """Requests counted against a key per minute, hour or day, by outcome (at most
        1,440 buckets, zero-filled, oldest first)."""
        first, step, buckets = usage.bucket_range(granularity, since, until, datetime.now(UTC))
        rows = await request.app.state.queries.api_key_usage(
            db, **caller_params(request), id=key_id, first=float(first), step=float(step),
            buckets=buckets)
        await authorized(db, request, rows[0] if rows else None)
        if rows[0]["id"] is None:
            raise _no_such_key(key_id)
        return Data(KeyUsage(
            key_id=key_id, granularity=granularity,
            since=datetime.fromtimestamp(first, UTC),
            until=datetime.fromtimestamp(first + step * buckets, UTC),
            buckets=[UsageBucket(start=r["bucket_start"], success=r["success"],
                                 denied_scope=r["denied_scope"], rate_limited=r["rate_limited"],
                                 revoked_or_expired=r["revoked_or_expired"]) for r in rows]))

    @patch("/{key_id:str}", operation_id="updateApiKey", opt=WRITE)
    async def update_api_key(self, request: AppRequest, db: Db, key_id: KeyId,
                             data: JSONBody[ApiKeyUpdate]) -> Data[ApiKey]:
        """Rename a key, change its scopes (never beyond the caller's own) or its rate limit."""
        async with db.transaction():
            await _stop_key_writes(db, request, key_id)  # removing a scope takes access away
            caller = await lock_caller(db, request)
            key = await _locked_key(db, request, caller, key_id)
            _check_may_act_on(caller, key)
            if data.scopes is not None:
                _check_scopes(caller, data.scopes)
            if key["revoked_at"] is not None:
                raise Conflict("A revoked key cannot be changed.", code="key_revoked")
            limit = data.rate_limit or None  # UNSET and null both store no limit
            row = await request.app.state.queries.update_api_key(
                db, org_id=caller.org_id, id=key_id, name=data.name, scopes=data.scopes,
                set_rate_limit=data.rate_limit is not msgspec.UNSET,
                rate_limit_requests=limit and limit.requests,
                rate_limit_window_seconds=limit and limit.window_seconds)
            changes = {f: getattr(data, f) for f in ("name", "scopes") if getattr(data, f)}
            if data.rate_limit is not msgspec.UNSET:
                changes["rate_limit"] = data.rate_limit
            await _audit(db, request, caller, "api_key.updated", row, **changes)
        return Data(to_api_key(row))

    @delete("/{key_id:str}", operation_id="revokeApiKey", opt=WRITE, status_code=200)
    async def revoke_api_key(self, request: AppRequest, db: Db,
                             key_id: KeyId) -> Data[ApiKey]:
        """Revoke a key. Instantaneous: once this returns, every request with it gets 401."""
        async with db.transaction():
            await _stop_key_writes(db, request, key_id)
            caller = await lock_caller(db, request)
            key = await _locked_key(db, request, caller, key_id)
            _check_may_act_on(caller, key)
            row = await request.app.state.queries.revoke_api_key(db, org_id=caller.org_id,
                                                                 id=key_id)
            if key["revoked_at"] is None:
                await _audit(db, request, caller, "api_key.revoked", row)
        return Data(to_api_key(row))

    @post("/{key_id:str}/rotate", operation_id="rotateApiKey", opt=WRITE, status_code=201,
          cache_control=NO_STORE)
    async def rotate_api_key(self, request: AppRequest, db: Db, key_id: KeyId,
                             data: JSONBody[ApiKeyRotate | None] = None) -> Response[Data[ApiKeyRotated]]:
        """A successor with the same name, scopes and environment; the old key expires after
        the grace period (0: now)."""
        grace = (data or ApiKeyRotate()).grace_period_seconds
        async with db.transaction():
            await _stop_key_writes(db, request, key_id)  # grace 0 takes access away
            caller = await lock_caller(db, request)
            old = await _locked_key(db, request, caller, key_id)
            _check_may_act_on(caller, old)
            if old["revoked_at"] is not None:
                raise Conflict("A revoked key cannot be rotated.", code="key_revoked")
            if old["rotated_to"] is not None:
                raise Conflict(f"This key was already rotated to {old['rotated_to']}.",
                               code="key_already_rotated")
            if status_of(old) == "expired":
                raise Conflict("An expired key cannot be rotated; create a new key.",
                               code="key_expired")
            if replay := await idempotency.claim(db, request, caller.org_id):
                return replay
            # Without a grace period the old key stops counting as it is replaced.
            await quotas.check_api_keys(db, request, caller,
                                        retiring_id=key_id if grace == 0 else None)
            queries = request.app.state.queries
            new_key = mint(old["environment"], request.app.state.settings.pepper)
            row = await queries.insert_api_key(
                db, org_id=caller.org_id, id=new_id("key"), lookup_id=new_key.lookup_id,
                secret_hash=new_key.secret_hash, key_suffix=new_key.key_suffix, name=old["name"],
                environment=old["environment"], scopes=list(old["scopes"]),
                # A successor never outlives its predecessor's own end.
                created_by=caller.actor_id, expires_at=old["expires_at"],
                rate_limit_requests=old["rate_limit_requests"],
                rate_limit_window_seconds=old["rate_limit_window_seconds"])
            retired = await queries.retire_rotated_api_key(
                db, org_id=caller.org_id, id=key_id, grace_seconds=float(grace),
                successor_id=row["id"])
            await _audit(db, request, caller, "api_key.rotated", retired, successor=row["id"],
                         grace_period_seconds=grace)
            created = to_created(row, None)
            rotated = ApiKeyRotated(**msgspec.structs.asdict(created),
                                    previous_key=to_api_key(retired))
            await idempotency.remember(db, request, caller.org_id, 201,
                                       msgspec.json.encode(Data(rotated)))
        return Response(Data(msgspec.structs.replace(rotated, key=new_key.token)),
                        status_code=201)


class LeakedKeysController(Controller):
    path = "/v1/api-keys/revoke-leaked"
    tags = ["API keys"]

    @post("/", operation_id="revokeLeakedApiKey", status_code=202, security=[{}],
          before_request=limit_by_address("leak_report"))
    async def revoke_leaked(self, request: AppRequest, db: Db,
                            data: JSONBody[LeakedKeyReport]) -> Data[Accepted]:
        """Report a key found in public; a real one is revoked. Always 202, no credential."""
        parsed = parse_token(data.key.strip())
        if parsed is None or parsed.kind != "api_key":
            return Data(Accepted())
        queries = request.app.state.queries
        secret_hash = hash_secret(request.app.state.settings.pepper, parsed.token)
        async with db.transaction():
            await queries.stop_leaked_api_key_writes(db, lookup_id=parsed.lookup_id,
                                                     secret_hash=secret_hash)
            row = await queries.revoke_leaked_api_key(db, lookup_id=parsed.lookup_id,
                                                      secret_hash=secret_hash)
            if row is not None:
                await audit.record(db, request, org_id=row["org_id"], actor_id="leak_report",
                                   action="api_key.revoked_as_leaked", target_type="api_key",
                                   target_id=row["id"], environment=row["environment"])
        return Data(Accepted())

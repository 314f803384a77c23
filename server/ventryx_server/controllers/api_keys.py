"""API keys: create, list, get, update, revoke, rotate, and the leaked-key kill switch."""

from datetime import UTC, datetime
from typing import Annotated, Literal, cast

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
from ventryx_shared.tokens import parse_token
from ventryx_shared.usage import Granularity, KeyUsage, UsageBucket

from .. import audit, idempotency, usage
from ..addresses import limit_by_address
from ..auth import (
    authorized,
    caller_params,
    credential_of,
    hash_secret,
    lock_caller,
    require_credential,
)
from ..db import Db
from ..errors import Conflict, UnprocessableEntity, no_such
from ..keys import to_api_key, to_created
from ..openapi import NO_STORE
from ..request_type import AppRequest
from ..services import api_keys
from ..services.api_keys import KeyFields
from .pagination import Limit, StartingAfter, cursor
from .reads import authorized_one, authorized_page

READ = {"scope": "api-keys:read"}
WRITE = {"scope": "api-keys:write"}
KeyId = Annotated[str, Parameter(description="The key's id, key_…", max_length=64)]


class ApiKeysController(Controller):
    path = "/api-keys"
    tags = ["API keys"]
    before_request: BeforeRequestHookHandler = require_credential

    @post("/", operation_id="createApiKey", opt=WRITE, status_code=201, cache_control=NO_STORE)
    async def create_api_key(
        self, request: AppRequest, db: Db, data: JSONBody[ApiKeyCreate]
    ) -> Response[Data[ApiKeyCreated]]:
        """Create a key; the response is the only one that ever carries the key itself."""
        if data.expires_at is not None and (
            data.expires_at.tzinfo is None or data.expires_at <= datetime.now(UTC)
        ):
            raise UnprocessableEntity(
                "expires_at must be a future time with a time zone.", param="expires_at"
            )
        limit = data.rate_limit
        fields = KeyFields(
            name=data.name,
            scopes=data.scopes,
            # An authorized credential always has its environment (a session's is per request).
            environment=data.environment or cast(str, credential_of(request).environment),
            expires_at=data.expires_at,
            rate_limit_requests=limit.requests if limit else None,
            rate_limit_window_seconds=limit.window_seconds if limit else None,
        )
        details = {"scopes": data.scopes, **({"rate_limit": limit} if limit else {})}
        if idempotency.idempotency_key(request) is None:
            added = await api_keys.create_key(db, request, fields, details)
        else:
            async with db.transaction():
                added = await api_keys.create_key(db, request, fields, details)
                if isinstance(added, Response):
                    return added
                await idempotency.remember(
                    db,
                    request,
                    added.row["org_id"],
                    201,
                    msgspec.json.encode(Data(to_created(added.row, None))),
                )
        if isinstance(added, Response):  # only with an Idempotency-Key
            return added
        return Response(Data(to_created(added.row, added.token)), status_code=201)

    @get("/", operation_id="listApiKeys", opt=READ)
    async def list_api_keys(
        self,
        request: AppRequest,
        db: Db,
        limit: Limit = 20,
        starting_after: StartingAfter = None,
        status: FromQuery[Literal["active", "expired", "revoked"] | None] = None,
        environment: FromQuery[Environment | None] = None,
        unused_for: Annotated[
            str | None,
            Parameter(
                description="Only keys without a successful request for this long (30d, 12h, "
                "90m); a key never used counts from its creation",
                pattern=r"^[1-9][0-9]{0,5}[mhd]$",
                max_length=16,
            ),
        ] = None,
    ) -> Page[ApiKey]:
        """List keys, newest first; never the key itself."""
        unused_seconds = (
            None if unused_for is None else usage.parse_duration(unused_for, "unused_for")
        )
        return await authorized_page(
            db,
            request,
            request.app.state.queries.list_api_keys,
            to_api_key,
            limit,
            key_environment=environment,
            status=status,
            starting_after=cursor("key", starting_after),
            unused_seconds=unused_seconds,
            quiet_seconds=request.app.state.settings.traffic_quiet_seconds,
        )

    @get("/{key_id:str}", operation_id="getApiKey", opt=READ)
    async def get_api_key(self, request: AppRequest, db: Db, key_id: KeyId) -> Data[ApiKey]:
        """Retrieve one key, redacted."""
        return await authorized_one(
            db,
            request,
            request.app.state.queries.get_api_key,
            to_api_key,
            "API key",
            key_id,
            quiet_seconds=request.app.state.settings.traffic_quiet_seconds,
        )

    @get("/{key_id:str}/usage", operation_id="getApiKeyUsage", opt=READ)
    async def get_api_key_usage(
        self,
        request: AppRequest,
        db: Db,
        key_id: KeyId,
        since: Annotated[
            datetime | None,
            Parameter(
                description="Start (RFC 3339 with a time zone), rounded down to a bucket; "
                "before until, at most 1,440 buckets earlier; default: an hour, a "
                "day or 30 days before until"
            ),
        ] = None,
        until: Annotated[
            datetime | None, Parameter(description="End, exclusive (default: now)")
        ] = None,
        granularity: Annotated[
            Granularity, Parameter(description="Bucket size: minute, hour or day")
        ] = "hour",
    ) -> Data[KeyUsage]:
        """Requests counted against a key per minute, hour or day, by outcome (at most
        1,440 buckets, zero-filled, oldest first)."""
        first, step, buckets = usage.bucket_range(granularity, since, until, datetime.now(UTC))
        rows = await request.app.state.queries.api_key_usage(
            db,
            **caller_params(request),
            id=key_id,
            first=float(first),
            step=float(step),
            buckets=buckets,
        )
        await authorized(db, request, rows[0] if rows else None)
        if rows[0]["id"] is None:
            raise no_such("API key", key_id)
        return Data(
            KeyUsage(
                key_id=key_id,
                granularity=granularity,
                since=datetime.fromtimestamp(first, UTC),
                until=datetime.fromtimestamp(first + step * buckets, UTC),
                buckets=[
                    UsageBucket(
                        start=r["bucket_start"],
                        success=r["success"],
                        denied_scope=r["denied_scope"],
                        rate_limited=r["rate_limited"],
                        revoked_or_expired=r["revoked_or_expired"],
                    )
                    for r in rows
                ],
            )
        )

    @patch("/{key_id:str}", operation_id="updateApiKey", opt=WRITE)
    async def update_api_key(
        self, request: AppRequest, db: Db, key_id: KeyId, data: JSONBody[ApiKeyUpdate]
    ) -> Data[ApiKey]:
        """Rename a key, change its scopes (never beyond the caller's own) or its rate limit."""
        async with db.transaction():
            # Removing a scope takes access away.
            await api_keys.stop_key_writes(db, request, key_id)
            caller = await lock_caller(db, request)
            key = await api_keys.locked_key(db, request, caller, key_id)
            api_keys.check_may_act_on(caller.scopes, key)
            if data.scopes is not None:
                api_keys.check_no_duplicate_scopes(data.scopes)
                api_keys.check_grantable(caller.scopes, data.scopes)
            if key["revoked_at"] is not None:
                raise Conflict("A revoked key cannot be changed.", code="key_revoked")
            limit = data.rate_limit or None  # UNSET and null both store no limit
            row = await request.app.state.queries.update_api_key(
                db,
                org_id=caller.org_id,
                id=key_id,
                name=data.name,
                scopes=data.scopes,
                set_rate_limit=data.rate_limit is not msgspec.UNSET,
                rate_limit_requests=limit and limit.requests,
                rate_limit_window_seconds=limit and limit.window_seconds,
            )
            changes = {f: getattr(data, f) for f in ("name", "scopes") if getattr(data, f)}
            if data.rate_limit is not msgspec.UNSET:
                changes["rate_limit"] = data.rate_limit
            await audit.record_change(
                db, request, caller, "api_key.updated", key_id, row["environment"], **changes
            )
        return Data(to_api_key(row))

    @delete("/{key_id:str}", operation_id="revokeApiKey", opt=WRITE, status_code=200)
    async def revoke_api_key(self, request: AppRequest, db: Db, key_id: KeyId) -> Data[ApiKey]:
        """Revoke a key. Instantaneous: once this returns, every request with it gets 401."""
        async with db.transaction():
            await api_keys.stop_key_writes(db, request, key_id)
            caller = await lock_caller(db, request)
            key = await api_keys.locked_key(db, request, caller, key_id)
            api_keys.check_may_act_on(caller.scopes, key)
            row = await request.app.state.queries.revoke_api_key(
                db, org_id=caller.org_id, id=key_id
            )
            if key["revoked_at"] is None:
                await audit.record_change(
                    db, request, caller, "api_key.revoked", key_id, row["environment"]
                )
        return Data(to_api_key(row))

    @post(
        "/{key_id:str}/rotate",
        operation_id="rotateApiKey",
        opt=WRITE,
        status_code=201,
        cache_control=NO_STORE,
    )
    async def rotate_api_key(
        self, request: AppRequest, db: Db, key_id: KeyId, data: JSONBody[ApiKeyRotate | None] = None
    ) -> Response[Data[ApiKeyRotated]]:
        """A successor with the same name, scopes and environment; the old key expires after
        the grace period (0: now)."""
        grace = (data or ApiKeyRotate()).grace_period_seconds
        async with db.transaction():
            await api_keys.stop_key_writes(db, request, key_id)  # grace 0 takes access away
            caller = await lock_caller(db, request)
            old = await api_keys.locked_key(db, request, caller, key_id)
            api_keys.check_may_act_on(caller.scopes, old)
            rotated = await api_keys.rotate_key(db, request, caller, old, grace)
            if isinstance(rotated, Response):
                return rotated
            await idempotency.remember(
                db,
                request,
                caller.org_id,
                201,
                msgspec.json.encode(Data(msgspec.structs.replace(rotated, key=None))),
            )
        return Response(Data(rotated), status_code=201)


class LeakedKeysController(Controller):
    path = "/api-keys/revoke-leaked"
    tags = ["API keys"]

    @post(
        "/",
        operation_id="revokeLeakedApiKey",
        status_code=202,
        security=[{}],
        before_request=limit_by_address("leak_report"),
    )
    async def revoke_leaked(
        self, request: AppRequest, db: Db, data: JSONBody[LeakedKeyReport]
    ) -> Data[Accepted]:
        """Report a key found in public; a real one is revoked. Always 202, no credential."""
        parsed = parse_token(data.key.strip())
        if parsed is None or parsed.kind != "api_key":
            return Data(Accepted())
        queries = request.app.state.queries
        secret_hash = hash_secret(request.app.state.settings.pepper, parsed.token)
        async with db.transaction():
            await queries.stop_leaked_api_key_writes(
                db, lookup_id=parsed.lookup_id, secret_hash=secret_hash
            )
            row = await queries.revoke_leaked_api_key(
                db, lookup_id=parsed.lookup_id, secret_hash=secret_hash
            )
            if row is not None:
                await audit.record(
                    db,
                    request,
                    org_id=row["org_id"],
                    actor_id="leak_report",
                    action="api_key.revoked_as_leaked",
                    target_type="api_key",
                    target_id=row["id"],
                    environment=row["environment"],
                )
        return Data(Accepted())

"""Members' dashboard sessions: log in (``POST /v1/sessions``) and log out.

A session token (``vtxs_…``) goes through the same folded authorization as an API key
(session_caller in 0013_caller_per_kind.up.sql); its scopes follow the member's role on
every request, and it picks its environment per request (``Ventryx-Environment``).
"""

import secrets

import asyncpg
import msgspec
from litestar import Controller, Response, delete, post
from litestar.background_tasks import BackgroundTask
from litestar.params import JSONBody

from ventryx_shared.common import Data
from ventryx_shared.ids import new_id
from ventryx_shared.me import Organization
from ventryx_shared.sessions import Session, SessionCreate, SessionCreated
from ventryx_shared.tokens import LOOKUP_LENGTH, SESSION_PREFIX, generate_session_token

from .. import addresses, audit
from ..addresses import limit_by_address
from ..auth import caller_params, hash_secret, lock_caller, require_credential
from ..db import Db
from ..errors import Unauthenticated, UnprocessableEntity, error_response
from ..openapi import NO_STORE
from ..passwords import HASHER, hash_password, needs_rehash, verify_password
from ..request_type import AppRequest
from ..services.logins import LoginThrottle
from ..services.members import require_session, to_member

SESSION_IDLE_SECONDS = 12 * 3600
SESSION_LIFETIME_SECONDS = 7 * 24 * 3600

# Checked when the email matches no member, so that answer costs the same argon2 work
# as a wrong password. Made with the live parameters, so it follows any change to them.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(32))

_WRONG_LOGIN = "Incorrect email or password."


def to_session(row: asyncpg.Record) -> Session:
    return msgspec.convert({f: row[f] for f in Session.__struct_fields__}, Session)


async def _matching_members(
    candidates: list[asyncpg.Record], password: str
) -> list[asyncpg.Record]:
    if not candidates:
        await verify_password(_DUMMY_HASH, password)
        return []
    matched = []
    for member in candidates:
        if await verify_password(member["password_hash"] or _DUMMY_HASH, password):
            matched.append(member)
    return matched


async def _record_failure(request: AppRequest, candidates: list[asyncpg.Record]) -> None:
    state = request.app.state
    async with (
        state.pool.acquire(timeout=state.settings.pool_timeout_seconds) as db,
        db.transaction(),
    ):
        for member in candidates:
            await audit.record(
                db,
                request,
                org_id=member["org_id"],
                actor_id=member["id"],
                action="session.login_failed",
                target_type="member",
                target_id=member["id"],
                environment=None,
                details={"reason": "incorrect_password"},
            )


class SessionsController(Controller):
    path = "/sessions"
    tags = ["Sessions"]

    # [{}], not []: Litestar drops an empty list, and the operation would then inherit the
    # document's bearer requirement; {} is OpenAPI's "no credential needed".
    @post(
        "/",
        operation_id="createSession",
        status_code=201,
        security=[{}],
        before_request=limit_by_address("login"),
        cache_control=NO_STORE,
    )
    async def create_session(
        self, request: AppRequest, db: Db, data: JSONBody[SessionCreate]
    ) -> Response[Data[SessionCreated]]:
        """Log a member in: a dashboard session token, shown once. No credential needed."""
        queries = request.app.state.queries
        throttle = LoginThrottle.of(request, data.email)
        attempt_ids = await throttle.claim_attempt(db, request)
        candidates = await queries.find_login_candidates(
            db, email=data.email, org_id=data.organization
        )
        matched = await _matching_members(candidates, data.password)
        if not matched:
            refusal = error_response(request, Unauthenticated(_WRONG_LOGIN, code="invalid_login"))
            # An email that matches no member has no organization whose log could hold the
            # failure. For one that does, the entry is written after the response is sent,
            # so that its commit does not make a known email answer more slowly.
            if candidates:
                refusal.background = BackgroundTask(_record_failure, request, candidates)
            return refusal
        if len(matched) > 1:
            await throttle.succeeded(db, request, attempt_ids)
            choices = ", ".join(f"{m['org_id']} ({m['org_name']})" for m in matched)
            raise UnprocessableEntity(
                f"This email is a member of several organizations; send organization, one "
                f"of: {choices}.",
                code="organization_required",
                param="organization",
            )
        member = matched[0]
        verified_hash = member["password_hash"]
        fresh_hash = (await hash_password(data.password)) if needs_rehash(verified_hash) else None
        token = generate_session_token()
        async with db.transaction():
            await throttle.succeeded(db, request, attempt_ids)
            row = await queries.insert_session(
                db,
                org_id=member["org_id"],
                id=new_id("ses"),
                member_id=member["id"],
                lookup_id=token[len(SESSION_PREFIX) :][:LOOKUP_LENGTH],
                secret_hash=hash_secret(request.app.state.settings.pepper, token),
                idle_seconds=float(SESSION_IDLE_SECONDS),
                lifetime_seconds=float(SESSION_LIFETIME_SECONDS),
                verified_hash=verified_hash,
                client_address=addresses.client_address(request.scope),
            )
            if row is None:  # the password changed, or the member left, a moment ago
                raise Unauthenticated(_WRONG_LOGIN, code="invalid_login")
            if fresh_hash is not None:
                await queries.rehash_member_password(
                    db,
                    org_id=member["org_id"],
                    id=member["id"],
                    new_hash=fresh_hash,
                    verified_hash=verified_hash,
                )
            await audit.record(
                db,
                request,
                org_id=member["org_id"],
                actor_id=member["id"],
                action="session.created",
                target_type="session",
                target_id=row["id"],
                environment=None,
            )
        created = SessionCreated(
            token=token,
            session=to_session(row),
            member=to_member(member),
            organization=Organization(id=member["org_id"], name=member["org_name"]),
        )
        return Response(Data(created), status_code=201)

    @delete(
        "/current",
        operation_id="deleteCurrentSession",
        before_request=require_credential,
        opt={"scope": None},
        status_code=200,
    )
    async def delete_current_session(self, request: AppRequest, db: Db) -> Data[Session]:
        """Log out: the session used for this request ends at once."""
        queries = request.app.state.queries
        async with db.transaction():
            # Writes in flight with the session finish first; later ones find it ended.
            await queries.stop_own_member_writes(db, **caller_params(request))
            caller = await lock_caller(db, request)
            require_session(caller)
            row = await queries.end_session(db, org_id=caller.org_id, id=caller.credential_id)
            await audit.record_change(
                db, request, caller, "session.ended", caller.credential_id, caller.environment
            )
        return Data(to_session(row))

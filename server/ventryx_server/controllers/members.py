"""Members of the organization: list, add, change, remove, and one's own password.

Owner-only rules: only an owner (a member's session, never an API key) makes or
unmakes owners or removes one, and the last owner can be neither demoted nor removed.
"""

from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromQuery, JSONBody, Parameter
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.common import Data, Page
from ventryx_shared.ids import new_id
from ventryx_shared.members import (
    Member,
    MemberCreate,
    MemberCreated,
    MemberRemoved,
    MemberUpdate,
    PasswordChange,
    PasswordChanged,
    Role,
)

from .. import audit, idempotency
from ..auth import (
    AuthorizedCaller,
    authorized,
    caller_params,
    lock_caller,
    require_credential,
)
from ..db import Db
from ..errors import Conflict, PermissionDenied, UnprocessableEntity, no_such
from ..openapi import NO_STORE
from ..passwords import hash_password, one_time_password, verify_password
from ..request_type import AppRequest
from ..services.logins import LoginThrottle
from ..services.members import require_session, to_member
from .pagination import Limit, StartingAfter, cursor
from .reads import authorized_one, authorized_page

ADMIN = {"scope": "org:admin"}
# Routes that hash a password authorize their caller in the database before the body is
# read and before argon2 (auth.py's require_credential): an invented key costs no hash.
ADMIN_BEFORE_HASHING = {**ADMIN, "authorize_before_body": True}
MemberId = Annotated[str, Parameter(description="The member's id, mem_…", max_length=64)]

KEYS_KEEP_WORKING = (
    "The member's sessions ended at once. API keys belong to the organization, not to "
    "the member who created them: the ones listed in api_keys_still_active keep working "
    "until someone revokes them."
)


async def _require_owner(
    db: asyncpg.Connection, request: AppRequest, caller: AuthorizedCaller, why: str
) -> None:
    role = None
    if caller.member_id is not None:
        role = await request.app.state.queries.get_member_role(
            db, org_id=caller.org_id, id=caller.member_id
        )
    if role != "owner":
        raise PermissionDenied(
            f"Only an owner, logged in to the dashboard, can {why}.", code="owner_required"
        )


async def _refuse_last_owner(
    db: asyncpg.Connection, request: AppRequest, caller: AuthorizedCaller, what: str
) -> None:
    owners = await request.app.state.queries.count_locked_owners(db, org_id=caller.org_id)
    if owners <= 1:
        raise Conflict(
            f"The last owner cannot be {what}; make another member an owner first.",
            code="last_owner",
        )


async def _stop_member_writes(db: asyncpg.Connection, request: AppRequest, member_id: str) -> None:
    """Before lock_caller: waits for the writes in flight with the member's sessions and
    holds back new ones until commit, which no stream of them can overtake (see
    sql/migrations/0014_fair_revocation.up.sql); the FOR UPDATE of _locked_member follows."""
    await request.app.state.queries.stop_member_writes(db, **caller_params(request), id=member_id)


async def _locked_member(
    db: asyncpg.Connection, request: AppRequest, caller: AuthorizedCaller, member_id: str
) -> asyncpg.Record:
    row: asyncpg.Record | None = await request.app.state.queries.lock_member(
        db, org_id=caller.org_id, id=member_id
    )
    if row is None:
        raise no_such("member", member_id)
    return row


class MembersController(Controller):
    path = "/members"
    tags = ["Members"]
    before_request: BeforeRequestHookHandler = require_credential

    @get("/", operation_id="listMembers", opt=ADMIN)
    async def list_members(
        self,
        request: AppRequest,
        db: Db,
        limit: Limit = 20,
        starting_after: StartingAfter = None,
        role: FromQuery[Role | None] = None,
    ) -> Page[Member]:
        """List members, newest first; never a password."""
        return await authorized_page(
            db,
            request,
            request.app.state.queries.list_members,
            to_member,
            limit,
            role=role,
            starting_after=cursor("mem", starting_after),
        )

    @get("/{member_id:str}", operation_id="getMember", opt=ADMIN)
    async def get_member(self, request: AppRequest, db: Db, member_id: MemberId) -> Data[Member]:
        """Retrieve one member."""
        return await authorized_one(
            db, request, request.app.state.queries.get_member, to_member, "member", member_id
        )

    @post(
        "/",
        operation_id="createMember",
        opt=ADMIN_BEFORE_HASHING,
        status_code=201,
        cache_control=NO_STORE,
    )
    async def create_member(
        self, request: AppRequest, db: Db, data: JSONBody[MemberCreate]
    ) -> Response[Data[MemberCreated]]:
        """Add a member; the response is the only one that carries their one-time password."""
        password = one_time_password()
        password_hash = await hash_password(password)  # before the transaction: no lock waits
        async with db.transaction():
            caller = await lock_caller(db, request)
            if data.role == "owner":
                await _require_owner(db, request, caller, "make a member an owner")
            if replay := await idempotency.claim(db, request, caller.org_id):
                return replay
            row = await request.app.state.queries.create_member(
                db,
                org_id=caller.org_id,
                id=new_id("mem"),
                email=data.email,
                name=data.name,
                role=data.role,
                password_hash=password_hash,
            )
            if row is None:
                raise Conflict(
                    f"{data.email} is already a member of this organization.",
                    code="member_exists",
                    param="email",
                )
            await audit.record_change(
                db,
                request,
                caller,
                "member.created",
                row["id"],
                caller.environment,
                email=row["email"],
                role=row["role"],
            )
            shown = to_member(row)
            await idempotency.remember(
                db,
                request,
                caller.org_id,
                201,
                msgspec.json.encode(
                    Data(MemberCreated(**msgspec.structs.asdict(shown), one_time_password=None))
                ),
            )
        created = MemberCreated(**msgspec.structs.asdict(shown), one_time_password=password)
        return Response(Data(created), status_code=201)

    @patch("/{member_id:str}", operation_id="updateMember", opt=ADMIN)
    async def update_member(
        self, request: AppRequest, db: Db, member_id: MemberId, data: JSONBody[MemberUpdate]
    ) -> Data[Member]:
        """Change a member's role or name; the role applies to their next request."""
        if data.role is None and data.name is None:
            raise UnprocessableEntity("Send role, name or both.", code="empty_update")
        async with db.transaction():
            await _stop_member_writes(db, request, member_id)  # a demotion takes access away
            caller = await lock_caller(db, request)
            member = await _locked_member(db, request, caller, member_id)
            role_changes = data.role is not None and data.role != member["role"]
            if role_changes and "owner" in (member["role"], data.role):
                await _require_owner(db, request, caller, "make or unmake an owner")
                if member["role"] == "owner":
                    await _refuse_last_owner(db, request, caller, "demoted")
            row = await request.app.state.queries.update_member(
                db, org_id=caller.org_id, id=member_id, role=data.role, name=data.name
            )
            changes = {
                field: {"from": member[field], "to": row[field]}
                for field in ("role", "name")
                if member[field] != row[field]
            }
            await audit.record_change(
                db, request, caller, "member.updated", member_id, caller.environment, **changes
            )
        return Data(to_member(row))

    @delete("/{member_id:str}", operation_id="removeMember", opt=ADMIN, status_code=200)
    async def remove_member(
        self, request: AppRequest, db: Db, member_id: MemberId
    ) -> Data[MemberRemoved]:
        """Remove a member: their sessions end at once; API keys they created keep working."""
        queries = request.app.state.queries
        async with db.transaction():
            await _stop_member_writes(db, request, member_id)
            caller = await lock_caller(db, request)
            member = await _locked_member(db, request, caller, member_id)
            if member["role"] == "owner":
                await _require_owner(db, request, caller, "remove an owner")
                await _refuse_last_owner(db, request, caller, "removed")
            sessions_ended = await queries.count_active_member_sessions(
                db, org_id=caller.org_id, member_id=member_id
            )
            await queries.delete_member(db, org_id=caller.org_id, id=member_id)
            keys = await queries.list_active_keys_created_by(
                db, org_id=caller.org_id, member_id=member_id
            )
            await audit.record_change(
                db,
                request,
                caller,
                "member.removed",
                member_id,
                caller.environment,
                email=member["email"],
                role=member["role"],
                sessions_ended=sessions_ended,
            )
        return Data(
            MemberRemoved(
                **msgspec.structs.asdict(to_member(member)),
                sessions_ended=sessions_ended,
                api_keys_still_active=[k["id"] for k in keys],
                note=KEYS_KEEP_WORKING,
            )
        )

    @post(
        "/me/password",
        operation_id="changeOwnPassword",
        opt={"scope": None, "authorize_before_body": True},
        status_code=200,
    )
    async def change_own_password(
        self, request: AppRequest, db: Db, data: JSONBody[PasswordChange]
    ) -> Data[PasswordChanged]:
        """Change the logged-in member's password; every other session of theirs ends."""
        queries = request.app.state.queries
        member = await queries.get_caller_member(db, **caller_params(request))
        member = await authorized(db, request, member)
        if member["id"] is None:
            raise PermissionDenied(
                "Only a member's dashboard session can change a password; "
                "an API key is not a member.",
                code="session_required",
            )
        # Guessing the current password with a stolen session counts against the same
        # per-email and per-address limits as guessing it at login.
        throttle = LoginThrottle.of(request, member["email"])
        attempt_ids = await throttle.claim_attempt(db, request)
        verified_hash = member["password_hash"]
        if verified_hash is None or not await verify_password(verified_hash, data.current_password):
            raise UnprocessableEntity(
                "current_password is not this member's password.",
                code="incorrect_password",
                param="current_password",
            )
        await throttle.succeeded(db, request, attempt_ids)
        if data.new_password == data.current_password:
            raise UnprocessableEntity(
                "new_password must differ from the current one.",
                code="password_unchanged",
                param="new_password",
            )
        new_hash = await hash_password(data.new_password)
        async with db.transaction():
            # Ends the member's other sessions: writes with them in flight finish first.
            await queries.stop_own_member_writes(db, **caller_params(request))
            caller = await lock_caller(db, request)
            require_session(caller)
            assert caller.member_id is not None  # require_session refused anything else
            row = await queries.set_member_password(
                db,
                org_id=caller.org_id,
                id=caller.member_id,
                new_hash=new_hash,
                verified_hash=verified_hash,
            )
            if row is None:
                raise Conflict(
                    "The password changed meanwhile; log in again.", code="concurrent_change"
                )
            ended = await queries.end_member_sessions(
                db, org_id=caller.org_id, member_id=caller.member_id, keep_id=caller.credential_id
            )
            await audit.record_change(
                db,
                request,
                caller,
                "member.password_changed",
                caller.member_id,
                caller.environment,
                other_sessions_ended=ended,
            )
        return Data(PasswordChanged(member=to_member(row), other_sessions_ended=ended))

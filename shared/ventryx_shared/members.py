"""Members of an organization on the wire, and what each role may do."""

from datetime import datetime
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from .common import BIDI_CONTROLS, PRINTABLE_PATTERN

Role = Literal["owner", "admin", "developer", "viewer"]
ROLES: tuple[str, ...] = ("owner", "admin", "developer", "viewer")

# The same table as member_role_scopes() in sql/migrations/0008_sessions.up.sql, which
# is what guards actually use; this copy is for documentation and the dashboard.
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "owner": ("org:admin",),
    "admin": ("org:admin",),
    "developer": (
        "workflows:read",
        "workflows:write",
        "events:read",
        "events:write",
        "api-keys:read",
        "api-keys:write",
    ),
    "viewer": ("workflows:read", "events:read", "api-keys:read"),
}

Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=254,
        pattern=rf"^[^@\s\x00-\x1f\x7f{BIDI_CONTROLS}]+@[^@\s\x00-\x1f\x7f{BIDI_CONTROLS}]+$(?!\n)",
        description="The member's email address; unique within an organization",
    ),
]
MemberName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=PRINTABLE_PATTERN,
        description="How the member is shown to others",
    ),
]
# Passwords are hashed with argon2id; the upper bound keeps one request from buying
# unbounded hashing work.
NewPassword = Annotated[
    str,
    Meta(min_length=12, max_length=256, description="At least 12 characters"),
]
AnyPassword = Annotated[str, Meta(min_length=1, max_length=256)]


class MemberCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    name: MemberName
    role: Role


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Role | None = None
    name: MemberName | None = None

    # For the OpenAPI document: an update changes something (else 422 empty_update).
    json_schema_extra: ClassVar[dict[str, object]] = {
        "anyOf": [
            {"required": ["role"], "properties": {"role": {"type": "string"}}},
            {"required": ["name"], "properties": {"name": {"type": "string"}}},
        ]
    }


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    current_password: AnyPassword
    new_password: NewPassword


class Member(msgspec.Struct, kw_only=True):
    """A member as lists and reads show them: never a password or its hash."""

    id: str
    email: str
    name: str
    role: Role
    scopes: list[str]
    must_change_password: bool
    created_at: datetime
    updated_at: datetime


class MemberCreated(Member, kw_only=True):
    """The one response that carries the initial password (null on an idempotent replay).

    It is a one-time password: the member's first session can only change it.
    """

    one_time_password: str | None


class MemberRemoved(Member, kw_only=True):
    sessions_ended: int
    # Keys the member created are the organization's, not the member's: they keep
    # working until someone revokes them. These are the ones still active.
    api_keys_still_active: list[str]
    note: str


class PasswordChanged(msgspec.Struct, kw_only=True):
    member: Member
    other_sessions_ended: int

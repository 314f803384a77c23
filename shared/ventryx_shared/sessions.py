"""Dashboard sessions on the wire: ``POST /v1/sessions`` (login) and logout."""

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from .me import Organization
from .members import AnyPassword, Member

# No NUL: the email is looked up in a text column, which cannot hold one.
LoginEmail = Annotated[str, Meta(min_length=1, max_length=254, pattern=r"^[^\x00]*$")]
OrganizationId = Annotated[str, Meta(pattern=r"^org_[0-9A-HJKMNP-TV-Z]{26}$")]


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: LoginEmail
    password: AnyPassword
    # Needed only when the email belongs to members of several organizations.
    organization: OrganizationId | None = None


class Session(msgspec.Struct, kw_only=True):
    id: str
    member_id: str
    created_at: datetime
    # Moves forward while the session is used; the session ends at whichever comes first.
    idle_expires_at: datetime
    absolute_expires_at: datetime
    ended_at: datetime | None = None


class SessionCreated(msgspec.Struct, kw_only=True):
    """The one response that carries the session token (``vtxs_…``)."""

    token: str
    session: Session
    member: Member
    organization: Organization

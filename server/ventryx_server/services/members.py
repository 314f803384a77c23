"""Members as the API shows them, and the rule that some actions are a member's own."""

from typing import Any

from ventryx_shared.members import ROLE_SCOPES, Member

from ..auth import AuthorizedCaller
from ..errors import PermissionDenied


def to_member(row: Any) -> Member:
    return Member(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        scopes=list(ROLE_SCOPES[row["role"]]),
        must_change_password=row["must_change_password"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def require_session(caller: AuthorizedCaller) -> None:
    if caller.member_id is None:
        raise PermissionDenied(
            "Only a member's dashboard session can do this; an API key is not a member.",
            code="session_required",
        )

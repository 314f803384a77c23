"""The seven scopes of the Ventryx documentation, and what each grants."""

from collections.abc import Iterable
from typing import Literal, get_args

Scope = Literal[
    "workflows:read",
    "workflows:write",
    "events:read",
    "events:write",
    "api-keys:read",
    "api-keys:write",
    "org:admin",
]

SCOPES: tuple[str, ...] = get_args(Scope)

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "workflows:read": "List and retrieve workflows",
    "workflows:write": "Create, update, and delete workflows",
    "events:read": "List and retrieve events",
    "events:write": "Emit events",
    "api-keys:read": "List API keys",
    "api-keys:write": "Create and revoke API keys",
    "org:admin": "Full organization-level access",
}

ADMIN_SCOPE = "org:admin"


def grants(held: "list[str] | tuple[str, ...] | frozenset[str]", needed: str) -> bool:
    """``org:admin`` grants every scope; any other scope grants only itself."""
    return ADMIN_SCOPE in held or needed in held


def grants_all(held: "list[str] | tuple[str, ...] | frozenset[str]", wanted: Iterable[str]) -> bool:
    return ADMIN_SCOPE in held or all(scope in held for scope in wanted)

"""``GET /v1/me``: who the caller is."""

from typing import Literal

import msgspec

from .common import Environment


class Organization(msgspec.Struct, kw_only=True):
    id: str
    name: str


class Caller(msgspec.Struct, kw_only=True):
    credential_type: Literal["api_key", "session"]
    credential_id: str
    member_id: str | None
    organization: Organization
    environment: Environment
    scopes: list[str]

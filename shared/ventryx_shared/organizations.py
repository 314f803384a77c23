"""The organization itself on the wire: ``GET``/``PATCH /v1/org``."""

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from .common import PRINTABLE_PATTERN

OrganizationName = Annotated[
    str, Meta(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN),
]


class OrganizationUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: OrganizationName


class OrganizationDetails(msgspec.Struct, kw_only=True):
    id: str
    name: str
    created_at: datetime
    updated_at: datetime

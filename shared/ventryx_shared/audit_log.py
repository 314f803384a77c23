"""Audit log entries on the wire: ``GET /v1/audit-log``."""

from datetime import datetime
from typing import Any

import msgspec

from .common import Environment


class AuditEntry(msgspec.Struct, kw_only=True):
    id: str
    # A member id (mem_…) for people, a key id (key_…) for API keys, or "leak_report".
    actor_id: str
    action: str
    target_type: str
    target_id: str | None
    environment: Environment | None
    request_id: str | None
    client_address: str | None
    details: dict[str, Any]
    created_at: datetime

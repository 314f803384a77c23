"""Quotas per organization: how many active API keys and workflows it may hold at once.

Checked inside the creating transaction, under a per-organization, per-quota advisory
lock held until commit (lock-quota in organizations.sql), so concurrent creations
cannot exceed a quota together. The operator sets an organization's quotas in the
database (``organizations.max_active_api_keys``, ``max_workflows``; see the README).
"""

from typing import Any

import asyncpg

from .auth import AuthorizedCaller
from .errors import ApiError
from .request_type import AppRequest


class QuotaExceeded(ApiError):
    status = 403
    type = "permission_error"
    code = "quota_exceeded"


_ADVICE = {
    "active_api_keys": "Revoke keys that are no longer used (expired and revoked keys do "
    "not count).",
    "workflows": "Delete workflows that are no longer used.",
}


async def _check(
    db: asyncpg.Connection,
    request: AppRequest,
    caller: AuthorizedCaller,
    quota: str,
    query: str,
    **params: Any,
) -> None:
    queries = request.app.state.queries
    await queries.lock_quota(db, quota=quota, org_id=caller.org_id)
    row = await getattr(queries, query)(db, org_id=caller.org_id, **params)
    if row["used"] >= row["quota"]:
        raise exceeded(quota, row["quota"], row["used"])


def exceeded(quota: str, size: int, used: int) -> QuotaExceeded:
    """The refusal of a creation at the quota (API keys: add_api_key checks it in SQL)."""
    return QuotaExceeded(
        f"Quota exceeded: this organization may hold {size} {quota.replace('_', ' ')} "
        f"(quota {quota}) and holds {used}. {_ADVICE[quota]}",
        param=quota,
    )


async def check_workflows(
    db: asyncpg.Connection, request: AppRequest, caller: AuthorizedCaller
) -> None:
    """Inside a transaction, before a workflow is added: 403 quota_exceeded at the quota."""
    await _check(db, request, caller, "workflows", "workflows_quota")

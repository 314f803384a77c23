"""Authorized reads, one row or one page: the statement authorizes its caller itself
(``authorized_caller`` joined in, see auth.py), and every read of a resource ends alike.

A get's statement returns one row whether or not the id is found (``caller_*`` set, the
resource's columns NULL); a list's returns the caller's row even for an empty page. No
row at all means the caller was turned away, and ``auth.authorized`` says why.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg

from ventryx_shared.common import Data, Page

from ..auth import authorized, caller_params
from ..errors import no_such
from ..request_type import AppRequest
from .pagination import page

Item = TypeVar("Item")


async def authorized_one(
    db: asyncpg.Connection,
    request: AppRequest,
    statement: Any,
    to_item: Callable[[Any], Item],
    what: str,
    resource_id: str,
    **params: Any,
) -> Data[Item]:
    """One resource by id, or 404 naming it (``what``: "API key", "workflow", …)."""
    row = await authorized(
        db, request, await statement(db, **caller_params(request), id=resource_id, **params)
    )
    if row["id"] is None:
        raise no_such(what, resource_id)
    return Data(to_item(row))


async def authorized_page(
    db: asyncpg.Connection,
    request: AppRequest,
    statement: Any,
    to_item: Callable[[Any], Item],
    limit: int,
    **params: Any,
) -> Page[Item]:
    """A page of at most ``limit`` (the statement is asked for one more)."""
    rows = await statement(db, **caller_params(request), limit=limit + 1, **params)
    await authorized(db, request, rows[0] if rows else None)
    items, has_more = page([to_item(row) for row in rows if row["id"] is not None], limit)
    return Page(items, has_more)

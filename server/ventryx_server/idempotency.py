"""``Idempotency-Key`` on POST: a retry with the same key and body replays the first response.

The key is claimed by inserting a row in the same transaction as the work, so a retry
racing the first try waits on the primary key and then replays what it committed; if
the first try failed (rolled back), the retry runs the work itself.
"""

import hashlib
from typing import Any

import asyncpg
from litestar import Response

from .auth import credential_of
from .errors import Conflict, InvalidRequest
from .request_type import AppRequest

HEADER = "idempotency-key"
REPLAY_HEADER = "Idempotent-Replayed"


def idempotency_key(request: AppRequest) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            code="invalid_idempotency_key",
            param="Idempotency-Key",
        )
    return key


async def fingerprint(request: AppRequest) -> bytes:
    """What a retry must repeat: the method, path, environment and body."""
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, credential_of(request).environment or ""):
        digest.update(part.encode() + b"\0")
    digest.update(await request.body())
    return digest.digest()


async def claim(db: asyncpg.Connection, request: AppRequest, org_id: str) -> Response[Any] | None:
    """Inside the work's transaction: None to go ahead, or the response to replay (the
    stored JSON of the handler's own response type, hence Any)."""
    key = idempotency_key(request)
    if key is None:
        return None
    queries = request.app.state.queries
    request_fingerprint = await fingerprint(request)
    if await queries.claim_idempotency_key(
        db, org_id=org_id, idempotency_key=key, fingerprint=request_fingerprint
    ):
        return None
    stored = await queries.get_idempotent_response(db, org_id=org_id, idempotency_key=key)
    return replay(
        request_fingerprint,
        stored["request_fingerprint"],
        stored["response_status"],
        stored["response_body"],
    )


def replay(
    request_fingerprint: bytes, stored_fingerprint: bytes, status: int, body: bytes
) -> Response[Any]:
    """The stored response of a claimed key, or 409 for a different request with it."""
    if stored_fingerprint != request_fingerprint:
        raise Conflict(
            "This Idempotency-Key was already used with a different request.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    return Response(
        content=bytes(body),
        status_code=status,
        media_type="application/json",
        headers={REPLAY_HEADER: "true"},
    )


async def remember(
    db: asyncpg.Connection, request: AppRequest, org_id: str, status: int, body: bytes
) -> None:
    """Stores what a replay returns (for a new key: without the key itself)."""
    key = idempotency_key(request)
    if key is not None:
        await request.app.state.queries.save_idempotent_response(
            db, org_id=org_id, idempotency_key=key, status=status, body=body
        )

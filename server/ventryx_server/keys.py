"""Minting API keys and turning their rows into what the API shows."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ventryx_shared.api_keys import ApiKey, ApiKeyCreated, KeyStatus
from ventryx_shared.rate_limits import rate_limit_of
from ventryx_shared.tokens import LOOKUP_LENGTH, REDACTION_TAIL, generate_api_key, redact

from .auth import hash_secret


@dataclass(frozen=True, slots=True)
class NewKey:
    token: str
    lookup_id: str
    secret_hash: bytes
    key_suffix: str

    def __repr__(self) -> str:
        return f"NewKey(lookup_id={self.lookup_id!r})"


def mint(environment: str, pepper: bytes) -> NewKey:
    token = generate_api_key(environment)  # type: ignore[arg-type]
    lookup_id = token[len(f"vtx_{environment}_") :][:LOOKUP_LENGTH]
    return NewKey(token, lookup_id, hash_secret(pepper, token), token[-REDACTION_TAIL:])


def status_of(row: Any, now: datetime | None = None) -> KeyStatus:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def to_api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        redacted_key=redact(f"vtx_{row['environment']}_", row["key_suffix"]),
        scopes=list(row["scopes"]),
        environment=row["environment"],
        status=status_of(row),
        created_at=row["created_at"],
        created_by=row["created_by"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        rotated_to=row["rotated_to"],
        rate_limit=rate_limit_of(row["rate_limit_requests"], row["rate_limit_window_seconds"]),
        # Only reads (get-api-key, list-api-keys) carry usage; a write's row shows none yet.
        requests_last_24h=row.get("requests_last_24h") or 0,
        requests_since_rotation=row.get("requests_since_rotation"),
        traffic_migrated=row.get("traffic_migrated"),
    )


def to_created(row: Any, token: str | None) -> ApiKeyCreated:
    shown = to_api_key(row)
    return ApiKeyCreated(**{f: getattr(shown, f) for f in shown.__struct_fields__}, key=token)

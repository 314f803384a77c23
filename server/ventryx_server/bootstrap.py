"""A new organization with its owner and first ``org:admin`` live key, shown once."""

from dataclasses import dataclass

import asyncpg

from ventryx_shared.ids import new_id

from .db import Queries
from .passwords import hash_password, one_time_password
from .services.api_keys import KeyFields, add_key


@dataclass(frozen=True)
class Bootstrapped:
    org_id: str
    org_name: str
    owner_id: str
    owner_email: str
    owner_password: str
    key_id: str
    key: str

    def __repr__(self) -> str:
        return f"Bootstrapped(org_id={self.org_id!r}, key_id={self.key_id!r})"


async def bootstrap(
    db: asyncpg.Connection,
    queries: Queries,
    pepper: bytes,
    *,
    org_name: str,
    owner_email: str,
    owner_name: str = "Owner",
) -> Bootstrapped:
    password = one_time_password()
    password_hash = await hash_password(password)
    org_id, owner_id = new_id("org"), new_id("mem")
    async with db.transaction():
        await queries.insert_organization(db, org_id=org_id, name=org_name)
        await queries.insert_member(
            db,
            org_id=org_id,
            id=owner_id,
            email=owner_email,
            name=owner_name,
            role="owner",
            password_hash=password_hash,
            must_change_password=True,
        )
        added = await add_key(
            db,
            queries,
            pepper,
            org_id=org_id,
            created_by=owner_id,
            caller_environment="live",
            caller_scopes=["org:admin"],
            fields=KeyFields(name="bootstrap admin key", environment="live", scopes=["org:admin"]),
        )
        await queries.insert_audit_entry(
            db,
            org_id=org_id,
            id=new_id("aud"),
            actor_id=owner_id,
            action="organization.created",
            target_type="organization",
            target_id=org_id,
            environment=None,
            request_id=None,
            client_address=None,
            details="{}",
        )
    return Bootstrapped(
        org_id, org_name, owner_id, owner_email, password, added.row["id"], added.token
    )

"""The login throttle: failed password checks counted per email at an address and per
address, in the database so that the limit holds across server processes. Logins
(controllers/sessions.py) and password changes (controllers/members.py) both go
through it, so guessing a password costs the same wherever it is tried.
"""

from dataclasses import dataclass

import asyncpg

from ..addresses import client_address
from ..auth import hash_secret
from ..errors import RateLimited
from ..request_type import AppRequest

# Failed logins allowed per window before 429: per email from one address (an account
# being guessed from there) and per address (one source guessing many accounts). There
# is no per-email count across addresses: it would let anyone lock the owner of an
# email out by failing from elsewhere. Guessing one account from many addresses is
# bounded by the number of addresses times MAX_FAILURES_PER_EMAIL_AT_ADDRESS, and slowed
# by argon2 and the bounded hashing concurrency (passwords.py).
LOGIN_WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_EMAIL_AT_ADDRESS = 10
MAX_FAILURES_PER_ADDRESS = 100


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    email_key: str  # the email at this address
    address_key: str

    @classmethod
    def of(cls, request: AppRequest, email: str) -> "LoginThrottle":
        # The email is kept only as an HMAC: the table is no address book.
        address = client_address(request.scope)
        digest = hash_secret(request.app.state.settings.pepper, f"{email.lower()} {address}").hex()
        return cls(f"email:{digest}", f"address:{address}")

    @property
    def keys(self) -> list[str]:
        return [self.email_key, self.address_key]

    async def claim_attempt(self, db: asyncpg.Connection, request: AppRequest) -> list[int]:
        """Counts this attempt as a failure until proven otherwise, or raises 429."""
        queries = request.app.state.queries
        async with db.transaction():
            await queries.lock_throttle_keys(db, throttle_keys=self.keys)
            limits = await queries.login_throttle(
                db,
                throttle_keys=self.keys,
                max_failures=[MAX_FAILURES_PER_EMAIL_AT_ADDRESS, MAX_FAILURES_PER_ADDRESS],
                window_seconds=float(LOGIN_WINDOW_SECONDS),
            )
            blocked = [r for r in limits if r["failures"] >= r["max_failures"]]
            if blocked:
                retry_after = max(r["retry_after_seconds"] for r in blocked)
                raise RateLimited(
                    f"Too many failed logins; try again in {retry_after} seconds.",
                    code="too_many_login_attempts",
                    headers={"Retry-After": str(retry_after)},
                )
            rows = await queries.record_login_attempt(
                db, throttle_keys=self.keys, window_seconds=float(LOGIN_WINDOW_SECONDS)
            )
        return [row["id"] for row in rows]

    async def succeeded(
        self, db: asyncpg.Connection, request: AppRequest, attempt_ids: list[int]
    ) -> None:
        await request.app.state.queries.forget_login_failures(
            db, email_key=self.email_key, attempt_ids=attempt_ids
        )

"""Members' passwords: argon2id, computed in worker threads so the event loop never waits.

API keys are high-entropy and use HMAC instead (see auth.py); argon2 is for the
low-entropy secrets people choose. Each hash takes ~25 ms of CPU and 19 MiB, so at most
``password_hash_concurrency`` (default: half the cores) run at once, whatever the number
of logins in flight: a flood of logins waits for its turn instead of taking the CPU the
rest of the API needs, and a login that cannot get a turn within
``HASH_QUEUE_SECONDS`` is refused with 503 rather than waiting without bound.
"""

import secrets

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import ServiceUnavailable

# OWASP's minimum for argon2id: 19 MiB, 2 iterations, 1 lane.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
HASH_QUEUE_SECONDS = 10.0

_concurrency = 1
_slots: anyio.CapacityLimiter | None = None


def limit_hashing(concurrency: int) -> None:
    """Sets how many hashes may run at once (the server's start calls it once)."""
    global _concurrency, _slots
    _concurrency, _slots = concurrency, None


async def _in_turn(work, *args):
    global _slots
    if _slots is None:  # made on first use, inside the running event loop
        _slots = anyio.CapacityLimiter(_concurrency)
    try:
        with anyio.fail_after(HASH_QUEUE_SECONDS):
            await _slots.acquire()
    except TimeoutError:
        raise ServiceUnavailable("Too many logins at once; retry shortly.",
                                 headers={"Retry-After": "1"}) from None
    try:
        return await anyio.to_thread.run_sync(work, *args)
    finally:
        _slots.release()


def one_time_password() -> str:
    return secrets.token_urlsafe(18)


async def hash_password(password: str) -> str:
    return await _in_turn(HASHER.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    return await _in_turn(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)

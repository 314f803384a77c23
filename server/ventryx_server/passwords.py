"""Members' passwords: argon2id, computed in worker threads so the event loop never waits.

API keys are high-entropy and use HMAC instead (see auth.py); argon2 is for the
low-entropy secrets people choose. Each hash takes ~25 ms of CPU and 19 MiB, so a flood
of logins must not be able to take the CPU the rest of the API needs:

- at most ``password_hash_concurrency`` hashes run at once (default: half the cores),
  in threads of their own, so the rest of the cores stay with the event loop and
  PostgreSQL (a lower thread priority, nice 10, was tried and dropped: on a machine
  saturated by other work it can starve logins past their 10 s bound);
- a hash that cannot start within ``HASH_QUEUE_SECONDS`` is refused with 503 rather
  than waiting without bound.
"""

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import ServiceUnavailable

# OWASP's minimum for argon2id: 19 MiB, 2 iterations, 1 lane.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
HASH_QUEUE_SECONDS = 10.0

_concurrency = 1
_executor: ThreadPoolExecutor | None = None
_turns: asyncio.Semaphore | None = None
_Args = TypeVarTuple("_Args")
_Result = TypeVar("_Result")


def limit_hashing(concurrency: int) -> None:
    """Sets how many hashes may run at once (the server's start calls it once)."""
    global _concurrency, _executor, _turns
    _concurrency, _turns = concurrency, None
    _executor = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")


async def _in_turn(work: Callable[[*_Args], _Result], *args: *_Args) -> _Result:
    global _turns, _executor
    if _executor is None:
        limit_hashing(_concurrency)
    if _turns is None:  # made on first use, inside the running event loop
        _turns = asyncio.Semaphore(_concurrency)
    try:
        await asyncio.wait_for(_turns.acquire(), HASH_QUEUE_SECONDS)
    except TimeoutError:
        raise ServiceUnavailable(
            "Too many logins at once; retry shortly.", headers={"Retry-After": "1"}
        ) from None
    try:
        return await asyncio.get_running_loop().run_in_executor(_executor, work, *args)
    finally:
        _turns.release()


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

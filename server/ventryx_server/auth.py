"""Credentials: parsed and checked offline before the handler, authorized inside the SQL.

How a request is authorized, followed through ``GET /v1/api-keys/{id}`` (scope
``api-keys:read``):

1. The hook. ``require_credential`` (this module; every guarded controller's
   ``before_request``) reads ``Authorization: Bearer vtx_live_…`` with
   ``CredentialReader``: format and checksum, then HMAC-SHA256 under the pepper, all
   without the database; a malformed or mistyped key is 401 here. It counts the key's
   rate limit (429 before any work) and leaves the statement parameters in the request
   state: ``credential_kind``, ``lookup_id``, ``secret_hash``, ``environment`` and the
   handler's ``opt["scope"]`` (``caller_params``).
2. The statement. The handler runs ``get-api-key`` (sql/queries/api_keys.sql) with those
   parameters. It starts ``FROM authorized_caller(:credential_kind, …) c`` and LEFT JOINs
   the key onto the caller's organization and environment. ``db.Queries`` rewrote that
   call when it loaded the file, once per kind, into ``api_key_caller(…)`` or
   ``session_caller(…)``, and picks the variant by ``credential_kind`` on each call:
   PostgreSQL plans a key's statement without a trace of sessions.
3. The caller functions (sql/migrations/0013_caller_per_kind.up.sql) return the caller
   only if the credential is valid at that moment (not revoked, not expired, the
   environment it was made for) and holds the scope (``org:admin`` holds every scope).
   Writes use the ``locked_`` forms inside their transaction (``lock_caller`` here, or
   folded into the write itself as ``emit-event`` and ``create-api-key`` do): they take
   the credential's shared advisory lock until commit (a session also ``FOR KEY SHARE``
   on its rows), so a revocation waits for the writes in flight and no later write
   overtakes it (0014_fair_revocation.up.sql, 0023_key_writes_without_row_lock.up.sql). Nothing is cached between requests, which is why
   revocation is instant on every process.
4. The answer. One row with ``caller_org_id`` set: ``authorized`` (or ``lock_caller``)
   counts the request and the handler goes on; a NULL key id in it is a 404 with the
   same words as an id that never existed (controllers/reads.py). No row: ``deny``
   spends one more query (``authenticate``) only on this refusal, to say 401 (no valid
   credential) or 403 (valid, but without the scope, or a one-time password to change).
"""

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import parse_qsl

import asyncpg
from litestar.datastructures import State
from litestar.types import Scope

from ventryx_shared.scopes import grants_all
from ventryx_shared.tokens import SESSION_PREFIX, looks_like_credential, parse_token

from .addresses import client_address
from .errors import InvalidRequest, PermissionDenied, RateLimited, Unauthenticated
from .json_body import check_input
from .request_type import AppRequest

if TYPE_CHECKING:  # rate_limits.py imports this module
    from .rate_limits import CredentialWindow

log = logging.getLogger("ventryx.auth")

ENVIRONMENT_HEADER = "ventryx-environment"
CREDENTIAL_STATE = "credential"  # where require_credential leaves it
_CALLER_PARAMS = "caller_params"
_USAGE_COUNTED = "usage_counted"  # a request counts once, whatever it checks twice
# Headers for the response, (name, value) bytes pairs, added by request_ids.py's middleware.
RESPONSE_HEADERS = "response_headers"
_QUERY_CREDENTIAL_NAMES = {
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "bearer",
    "authorization",
    "auth",
}


def hash_secret(pepper: bytes, token: str) -> bytes:
    return hmac.new(pepper, token.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Credential:
    kind: Literal["api_key", "session"]
    lookup_id: str
    secret_hash: bytes
    environment: str | None  # None only inside CredentialReader, for sessions
    # What every authorized statement takes from the credential, built once; requests
    # copy it (require_credential) and never change it.
    statement_params: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "statement_params",
            {
                "credential_kind": self.kind,
                "lookup_id": self.lookup_id,
                "secret_hash": self.secret_hash,
                "environment": self.environment,
            },
        )

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, lookup_id={self.lookup_id!r})"


@dataclass(frozen=True, slots=True)
class AuthorizedCaller:
    org_id: str
    credential_id: str
    member_id: str | None
    environment: str
    scopes: list[str]

    @property
    def actor_id(self) -> str:
        return self.member_id or self.credential_id

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "AuthorizedCaller":
        return cls(
            row["org_id"],
            row["credential_id"],
            row["member_id"],
            row["environment"],
            list(row["scopes"]),
        )


def _refuse_credentials_in_query(query_string: bytes) -> None:
    if not query_string:
        return
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name.lower() in _QUERY_CREDENTIAL_NAMES or looks_like_credential(value):
            raise Unauthenticated(
                "Credentials are not accepted in the URL, where logs and browser history keep "
                "them; send Authorization: Bearer <key>. Revoke a key that was sent this way.",
                code="credential_in_query",
            )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class CredentialReader:
    """Turns a request's Authorization header into a Credential, or refuses it with 401,
    without the database: the format and checksum check, then the keyed hash the
    database compares with what it stores.

    It remembers its answers for the headers it saw in the last minute or two. Parsing
    and hashing are a pure function of the header and the pepper, so the memo decides
    nothing: the database still authorizes every request against the credential's
    current row, and a revocation counts from the next request as before. It exists for
    speed: under load these two steps cost about 17 µs of CPU per request (cold caches
    make them three times slower than in a microbenchmark), the largest part of what
    authentication adds in the app. Refusals are not remembered. The memo holds at most
    ``capacity`` headers per ``ttl`` and forgets one within ``2 * ttl`` of its last use,
    so a token stays in it little longer than a client keeps using it (every token also
    passes through Python memory that is never scrubbed, memo or not).
    """

    def __init__(
        self,
        pepper: bytes,
        *,
        capacity: int = 4096,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pepper = pepper
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock
        self._current: dict[bytes, Credential] = {}
        self._previous: dict[bytes, Credential] = {}
        self._rotate_at = clock() + ttl

    def read(self, scope: Scope) -> Credential:
        """A well-formed credential from the Authorization header, or 401 (no database)."""
        _refuse_credentials_in_query(scope.get("query_string", b""))
        header = _header(scope, b"authorization")
        if not header:
            raise Unauthenticated(
                "No credential: send Authorization: Bearer <your API key>.",
                code="missing_credential",
            )
        credential = self._remembered(header)
        # Checked for every credential (API keys ignore a valid one): the document allows
        # only live and test, so nothing else may pass.
        environment = _session_environment(scope)
        if credential.environment is None:  # dashboard sessions pick theirs per request
            credential = Credential(
                credential.kind, credential.lookup_id, credential.secret_hash, environment
            )
        return credential

    def _remembered(self, header: bytes) -> Credential:
        credential = self._current.get(header)
        if credential is None:
            credential = self._previous.pop(header, None) or self._parse(header)
            if len(self._current) >= self._capacity:
                self._current.clear()  # one cheap step; a flood only costs re-parsing
            self._current[header] = credential
        return credential

    def forget_stale(self) -> None:
        """Every ``ttl``: what was not used since the previous turn is dropped. Run by
        ``forgetting`` every ``ttl / 4`` while the server runs, busy or quiet, rather than
        on each read, which keeps the clock out of the request path."""
        now = self._clock()
        if now >= self._rotate_at:
            recent = now < self._rotate_at + self._ttl
            self._previous, self._current = (self._current if recent else {}), {}
            self._rotate_at = now + self._ttl

    @contextlib.asynccontextmanager
    async def forgetting(self) -> AsyncIterator["CredentialReader"]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self._ttl / 4)
                self.forget_stale()

        async with _in_background(loop()):
            yield self

    def _parse(self, header: bytes) -> Credential:
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "Use the Bearer scheme: Authorization: Bearer <your API key>.",
                code="invalid_authorization_header",
            )
        parsed = parse_token(token)
        if parsed is None:
            if token.startswith(SESSION_PREFIX):
                raise _invalid_session()
            raise Unauthenticated("Invalid API key provided.", code="invalid_api_key")
        return Credential(
            parsed.kind,
            parsed.lookup_id,
            hash_secret(self._pepper, parsed.token),
            parsed.environment,
        )

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


def _session_environment(scope: Scope) -> str:
    value = _header(scope, ENVIRONMENT_HEADER.encode())
    environment = value.decode("latin-1") if value is not None else "live"
    if environment not in ("live", "test"):
        raise InvalidRequest(
            "Ventryx-Environment must be live or test.",
            code="invalid_environment",
            param="Ventryx-Environment",
        )
    return environment


async def require_credential(request: AppRequest) -> None:
    """The before-request hook of every guarded controller (``before_request =
    require_credential``): the request's credential, checked offline, or 401 before the
    body is read; its rate limit (429 before any work, rate_limits.py); then the input
    checks (json_body.check_input), which the hook takes over from the app's.

    A hook rather than a Litestar guard, which copies the route handler on every request,
    or middleware, which adds a frame to every resumption of the request's coroutine.
    tests/test_scope_matrix.py checks that every route is guarded or declared public.
    """
    if request.method == "OPTIONS":  # says which methods exist; no credential needed
        return
    scope = request.scope
    app_state = scope["litestar_app"].state
    try:
        credential: Credential = app_state.credentials.read(scope)
    except Unauthenticated:
        app_state.address_limits.count("failed_authentication", client_address(scope))
        raise
    state = scope["state"]
    state[CREDENTIAL_STATE] = credential
    state[_CALLER_PARAMS] = {
        **credential.statement_params,
        "scope": scope["route_handler"].opt.get("scope"),
    }
    # The credential's rate limit (rate_limits.py): its headers, or 429 before any work.
    limiter = app_state.rate_limiter
    window = limiter.known(credential)
    if window is None or window.limit is None:
        window = await _unknown_credential(app_state, scope, credential, window)
    try:
        state[RESPONSE_HEADERS] = window.admit(limiter.clock())
    except RateLimited:
        app_state.usage.counts.count(credential, "rate_limited")
        raise
    if scope["route_handler"].opt.get("authorize_before_body"):
        await _authorize_before_body(request)
    await check_input(request)


async def _unknown_credential(
    app_state: State, scope: Scope, credential: Credential, window: "CredentialWindow | None"
) -> "CredentialWindow":
    """A credential this process does not know to be real: refused (429) from an address
    that failed authentication too often, else looked up once (rate_limits.py)."""
    app_state.address_limits.check("failed_authentication", client_address(scope))
    return window or await app_state.rate_limiter.learn(credential)


async def _authorize_before_body(request: AppRequest) -> None:
    """For routes whose work is expensive (argon2): the credential and scope are checked
    in the database before the body is read and before that work. Its wait for a
    connection is bounded as provide_db's is (503 when it runs out)."""
    state = request.app.state
    async with state.pool.acquire(timeout=state.settings.pool_timeout_seconds) as db:
        caller = await state.queries.authenticate(db, **caller_params(request))
        scope = required_scope(request)
        if caller is None or (scope and not grants_all(caller["scopes"], [scope])):
            await deny(db, request)


def credential_of(request: AppRequest) -> Credential:
    credential: Credential = request.scope["state"][CREDENTIAL_STATE]
    return credential


def required_scope(request: AppRequest) -> str | None:
    return request.route_handler.opt.get("scope")


def caller_params(request: AppRequest) -> dict[str, Any]:
    """The parameters every authorized statement takes, with this handler's scope."""
    params: dict[str, Any] = request.scope["state"][_CALLER_PARAMS]
    return params


async def deny(db: asyncpg.Connection, request: AppRequest) -> NoReturn:
    """Raises the right refusal for a credential that an authorized statement turned away."""
    queries = request.app.state.queries
    is_session = credential_of(request).kind == "session"
    authenticate = (
        queries.authenticate_in_transaction if db.is_in_transaction() else queries.authenticate
    )
    caller = await authenticate(db, **caller_params(request))
    _count_once(request, "denied_scope" if caller is not None else "revoked_or_expired")
    if caller is None:
        request.app.state.address_limits.count(
            "failed_authentication", client_address(request.scope)
        )
        if is_session:
            raise _invalid_session()
        raise Unauthenticated("Invalid API key provided.", code="invalid_api_key")
    if is_session and not caller["scopes"]:
        # Every role has scopes; a session has none only while its member still holds
        # a one-time password (member_session_scopes in 0008_sessions.up.sql).
        raise PermissionDenied(
            "Change your one-time password first: POST /v1/members/me/password. Until then "
            "this session can only do that, read GET /v1/me and GET /v1/org, and log out.",
            code="password_change_required",
        )
    scope = required_scope(request)
    raise PermissionDenied(
        f"This credential lacks the scope this request needs: {scope}.", code="missing_scope"
    )


def _invalid_session() -> Unauthenticated:
    return Unauthenticated("Invalid or expired session: log in again.", code="invalid_session")


async def authorized(
    db: asyncpg.Connection,
    request: AppRequest,
    row: asyncpg.Record | None,
) -> asyncpg.Record:
    """Passes through a row of an authorized read (``caller_org_id`` set), else denies."""
    if row is None or row["caller_org_id"] is None:
        await deny(db, request)
    _count_once(request, "success", row["caller_org_id"], row["caller_credential_id"])
    request.scope["state"]["credential_id"] = row["caller_credential_id"]  # for logs.py
    return row


async def lock_caller(db: asyncpg.Connection, request: AppRequest) -> AuthorizedCaller:
    """Inside a transaction: the caller, its key locked against revocation until commit, or
    a denial."""
    row = await request.app.state.queries.lock_caller(db, **caller_params(request))
    if row is None:
        await deny(db, request)
    caller = AuthorizedCaller.from_row(row)
    _count_once(request, "success", caller.org_id, caller.credential_id)
    request.scope["state"]["credential_id"] = caller.credential_id  # for logs.py
    return caller


def _count_once(
    request: AppRequest, outcome: str, org_id: str | None = None, credential_id: str | None = None
) -> None:
    """Counts the request against its credential (usage.py), once; a success also keeps
    its last_used_at fresh. A refusal of a credential that does not exist is counted too
    but matches no row when flushed."""
    state = request.scope["state"]
    if _USAGE_COUNTED in state:
        return
    state[_USAGE_COUNTED] = True
    usage = request.app.state.usage
    usage.counts.count(state[CREDENTIAL_STATE], outcome)
    if credential_id is not None:
        usage.touch(org_id, credential_id)


@contextlib.asynccontextmanager
async def _in_background(
    coroutine: Coroutine[Any, Any, None],
) -> AsyncIterator[asyncio.Task[None]]:
    """Runs a never-ending coroutine as a task for the length of the block."""
    task = asyncio.create_task(coroutine)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""The asyncpg pool, the SQL loaded from ``sql/queries``, and the per-request connection."""

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncGenerator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import aiosql
import asyncpg
from aiosql.types import SQLOperationType
from asyncpg.pool import PoolConnectionProxy
from litestar import Litestar
from litestar.di import NamedDependency

from . import migrations
from .auth import CREDENTIAL_STATE, Credential
from .request_type import AppRequest
from .settings import Settings

# The asyncpg call that runs each kind of aiosql statement (the suffix after its name).
_CONNECTION_METHOD = {
    SQLOperationType.SELECT_ONE: "fetchrow",  # name^  -> one record or None
    SQLOperationType.SELECT_VALUE: "fetchval",  # name$  -> one value or None
    SQLOperationType.SELECT: "fetch",  # name   -> a list of records
    SQLOperationType.INSERT_UPDATE_DELETE: "execute",  # name!  -> the status string
}

CREDENTIAL_KINDS = ("api_key", "session")
# What auth.caller_params gives every authorizing statement, besides credential_kind.
CALLER_PARAMS = frozenset({"lookup_id", "secret_hash", "environment", "scope"})
# How an authorizing statement names its caller: authorized_caller(:credential_kind, ...)
# or locked_authorized_caller(:credential_kind, ...), the functions of 0013_caller_per_kind.
_CALLER_CALL = re.compile(r"\b(locked_)?authorized_caller\(:credential_kind,\s*")


class Statement(Protocol):
    """A named statement of Queries. What it returns follows its suffix (a record or None,
    a value, a list of records, the status string): the SQL decides, so it is Any here."""

    def __call__(
        self, connection: asyncpg.Connection | PoolConnectionProxy, /, **params: Any
    ) -> Awaitable[Any]: ...


class Queries:
    """Every named statement of ``sql/queries``: ``await queries.get_api_key(db, **params)``.

    The files are in aiosql's format, and aiosql parses them (names, operations, ``:name``
    parameters turned into ``$n``); the calls are ours: one function per statement that
    hands asyncpg the parameters in order, without aiosql's generic call layers (several
    Python frames per query, a measurable part of a 200 µs request).

    A statement that authorizes a caller calls ``authorized_caller(:credential_kind, ...)``
    (or its ``locked_`` form). It is loaded once per kind with that call replaced by the
    kind's own function, ``api_key_caller(...)`` or ``session_caller(...)``, and called
    with the variant the ``credential_kind`` argument names: PostgreSQL then plans an API
    key's statement with no trace of sessions (no tables opened, locked or probed for
    them, no UNION). Measured on a prepared authenticated read: 40 -> 28 µs of database
    CPU for folding the other kind away, and another 3 µs for dropping the UNION.
    """

    if TYPE_CHECKING:
        # __init__ sets one attribute per statement name, which a type checker cannot see.
        def __getattr__(self, name: str) -> Statement: ...

    def __init__(self, text: str) -> None:
        per_kind = {
            kind: _parse(_CALLER_CALL.sub(rf"\1{kind}_caller(", text)) for kind in CREDENTIAL_KINDS
        }
        for name, (operation, sql, names) in per_kind["api_key"].items():
            if "credential_kind" in names:
                raise ValueError(
                    f"{name}: :credential_kind only as authorized_caller's first argument"
                )
            method = _CONNECTION_METHOD[operation]
            sql_by_kind = {kind: statements[name][1] for kind, statements in per_kind.items()}
            if len(set(sql_by_kind.values())) == 1:  # no caller in it: one statement
                setattr(self, name, _statement(name, method, sql, names))
            else:
                setattr(self, name, _statement_by_credential_kind(name, method, sql_by_kind, names))

    @classmethod
    def from_dir(cls, sql_dir: Path) -> "Queries":
        files = sorted((sql_dir / "queries").glob("*.sql"))
        return cls("\n\n".join(path.read_text() for path in files))


def _parse(text: str) -> dict[str, tuple[SQLOperationType, str, tuple[str, ...]]]:
    """Each statement's operation, SQL with ``$n`` placeholders and parameter names in order."""
    parsed = aiosql.from_str(text, "asyncpg", mandatory_parameters=False)
    order = parsed.driver_adapter.var_sorted
    statements: dict[str, tuple[SQLOperationType, str, tuple[str, ...]]] = {}
    for name in parsed.available_queries:
        if name.endswith("_cursor"):  # aiosql adds one per SELECT; Ventryx has no use for it
            continue
        query = getattr(parsed, name)
        if query.operation not in _CONNECTION_METHOD:
            raise ValueError(f"{name}: use ^, $, ! or no suffix (see _CONNECTION_METHOD)")
        statements[name] = (query.operation, query.sql, tuple(order.get(name, ())))
    return statements


def _arguments(
    name: str,
    names: tuple[str, ...],
    params: dict[str, Any],
    unused_caller_params: frozenset[str] = frozenset(),
) -> list[Any]:
    """The statement's arguments in ``$n`` order, when the parameters are not exactly its
    own. A parameter it does not name is refused, never dropped (a misspelt filter would
    otherwise match everything), except the caller's parameters, which travel together
    (auth.caller_params) even to a statement that ignores one, as ``authenticate`` the
    scope."""
    unknown = params.keys() - set(names) - unused_caller_params
    missing = set(names) - params.keys()
    if unknown or missing:
        raise TypeError(f"{name}: unknown parameters {sorted(unknown)}, missing {sorted(missing)}")
    return [params[param] for param in names]


def _statement(name: str, method: str, sql: str, names: tuple[str, ...]) -> Any:
    count = len(names)

    def run(connection: asyncpg.Connection, **params: Any) -> Any:
        # In line, not a call to _arguments (~0.1 µs a query): as many parameters as the
        # statement names and all of them present means none it does not name.
        if len(params) == count:
            try:
                arguments = [params[param] for param in names]
            except KeyError:
                arguments = _arguments(name, names, params)
        else:
            arguments = _arguments(name, names, params)
        return getattr(connection, method)(sql, *arguments)

    return run


def _statement_by_credential_kind(
    name: str, method: str, sql_by_kind: dict[str, str], names: tuple[str, ...]
) -> Any:
    count = len(names)
    unused_caller_params = CALLER_PARAMS - set(names)

    def run(connection: asyncpg.Connection, *, credential_kind: str, **params: Any) -> Any:
        sql = sql_by_kind.get(credential_kind)
        if sql is None:
            raise ValueError(
                f"{name}: credential_kind must be one of {CREDENTIAL_KINDS}, "
                f"got {credential_kind!r}"
            )
        if len(params) == count:  # in line, as in _statement
            try:
                arguments = [params[param] for param in names]
            except KeyError:
                arguments = _arguments(name, names, params, unused_caller_params)
        else:
            arguments = _arguments(name, names, params, unused_caller_params)
        return getattr(connection, method)(sql, *arguments)

    return run


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's per-release reset query (a second round trip per request).

    Safe because no Ventryx code leaves session state on a pooled connection: no
    session-level SET (only SET LOCAL), advisory locks only as pg_advisory_xact_lock,
    LISTEN only on dedicated connections outside the pool, and transactions always end
    (asyncpg rolls back an open one before this is called).
    """


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _timeouts(settings: Settings) -> dict[str, str]:
    """The bounds every pooled connection's statements and transactions run under."""
    return {
        "lock_timeout": _milliseconds(settings.lock_timeout_seconds),
        "statement_timeout": _milliseconds(settings.statement_timeout_seconds),
        "idle_in_transaction_session_timeout": _milliseconds(
            settings.idle_in_transaction_timeout_seconds
        ),
    }


class TransactionPooledConnection(asyncpg.Connection):
    """A connection to a pooler in transaction mode (PgBouncer's ``pool_mode =
    transaction``), where each transaction may run in another PostgreSQL session.

    Session settings would land in whichever session served them, so the timeouts go with
    every transaction instead, as ``SET LOCAL`` sent in the same message as its ``BEGIN``
    (no extra round trip). A statement called outside a transaction is put in one of its
    own for that: two more round trips, the price of keeping its bounds behind a pooler
    (README "Connection poolers"). Subclasses name the bounds in ``set_timeouts``.
    """

    set_timeouts: str = ""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        # asyncpg's transaction() opens a top-level transaction with execute("BEGIN ...;").
        if not args and query.startswith("BEGIN") and not self.is_in_transaction():
            began: str = await super().execute(query + self.set_timeouts, timeout=timeout)
            return began
        status: str = await self._bounded(super().execute, query, *args, timeout=timeout)
        return status

    async def executemany(self, *args: Any, **kwargs: Any) -> None:
        await self._bounded(super().executemany, *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> list[Any]:
        rows: list[Any] = await self._bounded(super().fetch, *args, **kwargs)
        return rows

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().fetchrow, *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().fetchval, *args, **kwargs)

    async def _bounded(self, run: Any, *args: Any, **kwargs: Any) -> Any:
        if self.is_in_transaction():
            return await run(*args, **kwargs)
        async with self.transaction():
            return await run(*args, **kwargs)


def _pool_options(settings: Settings) -> dict[str, Any]:
    if not settings.transaction_pooler:
        # Session settings of every pooled connection, sent once when it connects.
        return {"server_settings": _timeouts(settings)}
    set_timeouts = "".join(
        f" SET LOCAL {name} = {value};" for name, value in _timeouts(settings).items()
    )
    return {
        "connection_class": type(
            "BoundedTransactionPooledConnection",
            (TransactionPooledConnection,),
            {"set_timeouts": set_timeouts},
        ),
        # Named prepared statements live in one PostgreSQL session, which the next
        # transaction may not get; PgBouncer before 1.21 (Debian 12 ships 1.18) does not
        # carry them over. Unnamed ones last within a transaction, where every statement
        # runs here.
        "statement_cache_size": 0,
    }


# How much longer than statement_timeout the server waits for a statement's answer
# itself. PostgreSQL's statement_timeout ends a statement it is running; it cannot help
# when its answers stop arriving (the network drops everything, the host hangs), and
# without a bound of our own the request would wait until TCP gives up, about 15 minutes
# on Linux. The margin lets PostgreSQL's own timeout (SQLSTATE 57014) come first. Its
# price is asyncpg's timer per statement: about 9 µs of CPU (measured with a bare
# fetchrow, uvloop), 1% of a request.
COMMAND_TIMEOUT_MARGIN_SECONDS = 2.0


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=min(settings.pool_min_size, settings.pool_max_size),
        max_size=settings.pool_max_size,
        reset=_keep_session,
        timeout=settings.pool_timeout_seconds,  # to open a connection, as to wait for one
        command_timeout=settings.statement_timeout_seconds + COMMAND_TIMEOUT_MARGIN_SECONDS,
        **_pool_options(settings),
    )


class SchemaBehind(SystemExit):
    pass


async def check_schema(pool: asyncpg.Pool, sql_dir: Path) -> None:
    async with pool.acquire() as conn:
        todo = await migrations.pending(_as_connection(conn), sql_dir)
    if todo:
        names = ", ".join(m.filename for m in todo)
        raise SchemaBehind(
            f"The database schema is behind; apply {names} "
            "(`ventryx-server migrate`, or psql as sql/README.md shows) before serving."
        )


@asynccontextmanager
async def pool_lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    settings: Settings = app.state.settings
    pool = await create_pool(settings)
    try:
        await check_schema(pool, settings.sql_dir)
        app.state.pool = pool
        yield
    finally:
        await pool.close()


# What handlers declare to get a pooled connection: ``db: Db``.
Db = NamedDependency[asyncpg.Connection]


class ConnectionsPerCredential:
    """At most ``limit`` of a process's pooled connections serve one credential at a time;
    its other requests queue here, in arrival order, so the rest of the pool stays free
    for everyone else.

    Measured before it existed (tests/test_bounded_waits.py): with one key's row held FOR
    UPDATE by an open transaction, 40 concurrent emits with that key took all 20 pooled
    connections, and requests with other keys queued behind them until lock_timeout had
    failed 33 of the 40; bounded waits alone made the hang finite, not short.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_use: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def try_take(self, credential: str) -> bool:
        """A place for the credential at once, if one is free and nobody queues for it."""
        in_use = self._in_use.get(credential, 0)
        if in_use < self._limit and credential not in self._waiting:
            self._in_use[credential] = in_use + 1
            return True
        return False

    async def take(self, credential: str) -> None:
        if self.try_take(credential):
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(credential, deque())
        queue.append(waiter)
        try:
            await waiter  # give_back hands its place over to us
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back(credential)  # handed over just as we gave up
            elif waiter in queue:
                queue.remove(waiter)
                if not queue and self._waiting.get(credential) is queue:
                    del self._waiting[credential]
            raise

    def give_back(self, credential: str) -> None:
        queue = self._waiting.get(credential)
        while queue:
            waiter = queue.popleft()
            if not queue:
                del self._waiting[credential]
            if not waiter.done():
                waiter.set_result(None)
                return
        in_use = self._in_use[credential] - 1
        if in_use:
            self._in_use[credential] = in_use
        else:
            del self._in_use[credential]


def _as_connection(proxy: PoolConnectionProxy) -> asyncpg.Connection:
    """A pooled connection, typed as what it stands for: asyncpg's proxy forwards every
    Connection method, but its type stubs do not make it a Connection."""
    return cast(asyncpg.Connection, proxy)


async def provide_db(request: AppRequest) -> AsyncGenerator[asyncpg.Connection, None]:
    state = request.app.state
    pool: asyncpg.Pool = state.pool
    shares: ConnectionsPerCredential = state.connections_per_credential
    credential: Credential | None = request.scope["state"].get(CREDENTIAL_STATE)
    share = credential.lookup_id if credential is not None else None
    holds_share = share is None or shares.try_take(share)
    try:
        if holds_share and pool.get_idle_size():
            # Nothing to wait for: no timer, which costs 10-13 µs a request here
            # (asyncio.timeout; asyncpg's acquire(timeout=) starts a task on Python 3.11).
            connection = await pool.acquire()
        else:
            async with asyncio.timeout(state.settings.pool_timeout_seconds):
                if not holds_share and share is not None:  # only a share can be not held
                    await shares.take(share)
                    holds_share = True
                connection = await pool.acquire()
    except BaseException:
        if share is not None and holds_share:
            shares.give_back(share)
        raise
    try:
        yield _as_connection(connection)
    except BaseException:
        # The request failed, perhaps because the database stopped answering: then the
        # release would wait for its cancellation and a rollback that never come. Bounded,
        # a connection that does not come back clean in time is closed by asyncpg, which
        # then raises (the pool opens another); the request's own error is what counts.
        # A healthy connection comes back at once.
        with contextlib.suppress(Exception):
            await _release(pool, connection, share, shares, timeout=COMMAND_TIMEOUT_MARGIN_SECONDS)
        raise
    await _release(pool, connection, share, shares)


async def _release(
    pool: asyncpg.Pool,
    connection: PoolConnectionProxy,
    share: str | None,
    shares: ConnectionsPerCredential,
    timeout: float | None = None,
) -> None:
    try:
        await pool.release(connection, timeout=timeout)
    finally:
        if share is not None:
            shares.give_back(share)

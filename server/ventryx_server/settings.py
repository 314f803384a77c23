"""Server settings, read from the environment unless a caller (a test, the CLI) passes them."""

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .addresses import AddressLimit, IpNetwork, parse_networks


def find_sql_dir() -> Path:
    """``sql/`` of the checkout in development, or the copy packed into the wheel."""
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def default_hash_concurrency() -> int:
    """Half the cores: password hashing never takes the CPU the rest of the API needs."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class Settings:
    database_url: str
    # The HMAC key that turns API keys into what the database stores. It must never be
    # kept in the database: a stolen copy of api_keys is then worthless.
    pepper: bytes = field(repr=False)
    sql_dir: Path = field(default_factory=find_sql_dir)
    pool_min_size: int = 2
    # Pooled connections per process (VENTRYX_POOL_SIZE): README "Scaling out" budgets
    # them against PostgreSQL's max_connections.
    pool_max_size: int = 20
    # last_used_at is written at most once per key per process in this many seconds.
    usage_flush_seconds: float = 10.0
    # Key usage (usage.py): minute buckets kept 48 hours, hour buckets 90 days; a rotated
    # key's traffic has migrated after this long without a successful request.
    usage_minutes_keep_seconds: float = 48 * 3600
    usage_hours_keep_seconds: float = 90 * 86400
    traffic_quiet_seconds: float = 15 * 60
    # VENTRYX_USAGE_COUNTING=off stops counting requests (last_used_at is still kept):
    # for operators who do not want the counts, and for bench/run.py's comparison.
    usage_counting: bool = True
    max_body_bytes: int = 1024 * 1024
    # Every wait of a request is bounded; running out is a 503 with Retry-After. A pooled
    # connection (the pool's queue), a lock (lock_timeout: a key row someone holds, a
    # revocation in progress), a statement (statement_timeout) and a transaction left
    # idle (idle_in_transaction_session_timeout, which closes the connection).
    pool_timeout_seconds: float = 5.0
    # A request body's next chunk must arrive within this (request_ids.py): a slow or
    # dead client is answered 408 and its request does nothing.
    body_read_timeout_seconds: float = 10.0
    lock_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 15.0
    idle_in_transaction_timeout_seconds: float = 30.0
    # One credential's requests hold at most this many of a process's pooled connections
    # (the rest wait their turn), so one stuck key leaves connections to everyone else.
    # None: four fifths of the pool (16 of 20), at least one (credential_connections).
    connections_per_credential: int | None = None
    # Rate limits and abuse resistance: see rate_limits.py, addresses.py, passwords.py.
    rate_limit_sync_seconds: float = 1.0
    trusted_proxies: tuple[IpNetwork, ...] = ()
    login_limit_per_address: AddressLimit = AddressLimit(300, 60)
    leak_report_limit_per_address: AddressLimit = AddressLimit(120, 60)
    failed_auth_limit_per_address: AddressLimit = AddressLimit(600, 60)
    password_hash_concurrency: int = field(default_factory=default_hash_concurrency)
    # How often an idle event stream sends a keep-alive comment (so that proxies keep it
    # open) and re-checks that its credential is still valid (stream_subscription.py).
    stream_heartbeat_seconds: float = 15.0
    # Operations (metrics.py, logs.py): the metrics listener's HOST:PORT (None: none),
    # the worker processes sharing it (each takes the next free port), the log format.
    metrics_address: str | None = None
    workers: int = 1
    log_format: str = "text"
    # Slow and dead clients (README "Slow and dead clients"), set by the CLI on the ASGI
    # server. A client gets this long to send a request's headers, and an idle keep-alive
    # connection is closed after it: 10 s is far above any real client on a WAN and far
    # below granian's 30 s default, which held 350 slowloris connections open for the
    # whole of it.
    header_read_timeout_seconds: float = 10.0
    # Connections one process serves at once (granian's backpressure: a connection past it
    # waits in the listen backlog until one closes). 1,000 leaves room for long-lived event
    # streams while bounding what idle or slow clients can hold.
    max_connections: int = 1000

    @property
    def address_limits(self) -> dict[str, AddressLimit]:
        """The per-address limits by surface, as addresses.AddressLimiter counts them."""
        return {
            "login": self.login_limit_per_address,
            "leak_report": self.leak_report_limit_per_address,
            "failed_authentication": self.failed_auth_limit_per_address,
        }

    # Behind a pooler in transaction mode (README "Connection poolers"): DATABASE_URL is
    # the pooler, and the event streams' LISTEN, which needs one session of its own for
    # as long as it runs, connects to listen_database_url (unset: DATABASE_URL).
    transaction_pooler: bool = False
    listen_database_url: str | None = None

    @property
    def credential_connections(self) -> int:
        """The pooled connections one credential's requests may hold at once."""
        if self.connections_per_credential is not None:
            return self.connections_per_credential
        return max(1, self.pool_max_size * 4 // 5)

    @property
    def listener_url(self) -> str:
        return self.listen_database_url or self.database_url

    @classmethod
    def from_env(cls) -> "Settings":
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise SystemExit("DATABASE_URL is not set")
        values = values_from_env()
        if values.get("transaction_pooler") and not values.get("listen_database_url"):
            raise SystemExit(
                "VENTRYX_DATABASE_POOLER=transaction needs "
                "VENTRYX_LISTEN_DATABASE_URL: event streams LISTEN on a direct "
                "connection to PostgreSQL, which a pooler in transaction mode "
                "cannot give"
            )
        pool_size = values.get("pool_max_size", cls.pool_max_size)
        if values.get("connections_per_credential", 0) > pool_size:
            raise SystemExit(
                f"VENTRYX_CONNECTIONS_PER_CREDENTIAL={values['connections_per_credential']} "
                f"is more than the pool's {pool_size} connections (VENTRYX_POOL_SIZE)"
            )
        return cls(database_url=url, pepper=load_pepper(), **values)


# Each parser turns a variable's text into the setting's value, or raises ValueError
# saying what it expects.
def _number(low: float, high: float, *, unit: float = 1) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value * unit

    return parse


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 86400:
        raise ValueError("must be a number of seconds above 0 and below 86400")
    return value


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return parse


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise ValueError("must be on or off")
    return text == "on"


def _log_format(text: str) -> str:
    from .logs import LOG_FORMATS

    if text not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
    return text


def _pooler(text: str) -> bool:
    if text not in ("none", "transaction"):
        raise ValueError("must be none or transaction")
    return text == "transaction"


def _postgresql_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL")
    return text


def _metrics_address(text: str) -> str:
    from .metrics import parse_address

    parse_address(text)
    return text


# Every setting an operator gives as an environment variable (README "Configuration"):
# variable -> (Settings field, parser). A variable that is not set keeps the default.
FROM_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "VENTRYX_USAGE_FLUSH_SECONDS": ("usage_flush_seconds", _seconds),
    "VENTRYX_USAGE_COUNTING": ("usage_counting", _on_off),
    "VENTRYX_USAGE_MINUTES_KEEP_HOURS": (
        "usage_minutes_keep_seconds",
        _number(1, 24 * 90, unit=3600),
    ),
    "VENTRYX_USAGE_HOURS_KEEP_DAYS": ("usage_hours_keep_seconds", _number(1, 3660, unit=86400)),
    "VENTRYX_TRAFFIC_QUIET_SECONDS": ("traffic_quiet_seconds", _seconds),
    "VENTRYX_POOL_SIZE": ("pool_max_size", _whole_number(1, 1000)),
    "VENTRYX_CONNECTIONS_PER_CREDENTIAL": ("connections_per_credential", _whole_number(1, 1000)),
    "VENTRYX_POOL_TIMEOUT_SECONDS": ("pool_timeout_seconds", _seconds),
    "VENTRYX_BODY_READ_TIMEOUT_SECONDS": ("body_read_timeout_seconds", _seconds),
    "VENTRYX_LOCK_TIMEOUT_SECONDS": ("lock_timeout_seconds", _seconds),
    "VENTRYX_STATEMENT_TIMEOUT_SECONDS": ("statement_timeout_seconds", _seconds),
    "VENTRYX_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": (
        "idle_in_transaction_timeout_seconds",
        _seconds,
    ),
    "VENTRYX_RATE_LIMIT_SYNC_SECONDS": ("rate_limit_sync_seconds", _number(0.01, 60)),
    "VENTRYX_TRUSTED_PROXIES": ("trusted_proxies", parse_networks),
    "VENTRYX_LOGIN_LIMIT_PER_ADDRESS": ("login_limit_per_address", AddressLimit.parse),
    "VENTRYX_LEAK_REPORT_LIMIT_PER_ADDRESS": ("leak_report_limit_per_address", AddressLimit.parse),
    "VENTRYX_FAILED_AUTH_LIMIT_PER_ADDRESS": ("failed_auth_limit_per_address", AddressLimit.parse),
    "VENTRYX_PASSWORD_HASH_CONCURRENCY": ("password_hash_concurrency", _whole_number(1, 1024)),
    "VENTRYX_STREAM_HEARTBEAT_SECONDS": ("stream_heartbeat_seconds", _seconds),
    "VENTRYX_METRICS_ADDRESS": ("metrics_address", _metrics_address),
    "VENTRYX_WORKERS": ("workers", _whole_number(1, 1024)),  # set by the CLI for its workers
    "VENTRYX_LOG_FORMAT": ("log_format", _log_format),
    "VENTRYX_HEADER_READ_TIMEOUT_SECONDS": ("header_read_timeout_seconds", _number(0.1, 3600)),
    "VENTRYX_MAX_CONNECTIONS": ("max_connections", _whole_number(1, 1_000_000)),
    "VENTRYX_DATABASE_POOLER": ("transaction_pooler", _pooler),
    "VENTRYX_LISTEN_DATABASE_URL": ("listen_database_url", _postgresql_url),
}


def values_from_env(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The Settings fields the environment sets; SystemExit names a variable it cannot use."""
    found = {}
    for variable, (name, parse) in FROM_ENV.items():
        if (text := env.get(variable)) is None:
            continue
        try:
            found[name] = parse(text)
        except ValueError as problem:
            raise SystemExit(f"{variable}={text!r}: {problem}") from None
    return found


def dev_pepper_file(data_dir: Path) -> Path:
    """Where the embedded database's pepper is generated, once, when no other is given."""
    return data_dir / "pepper"


def load_pepper(data_dir: Path | None = None) -> bytes:
    """VENTRYX_PEPPER (hex), else VENTRYX_PEPPER_FILE, else ``pepper`` in the dev data folder."""
    if value := os.environ.get("VENTRYX_PEPPER"):
        return _decode_pepper(value, "VENTRYX_PEPPER")
    if pepper_file := os.environ.get("VENTRYX_PEPPER_FILE"):
        return _decode_pepper(Path(pepper_file).read_text().strip(), pepper_file)
    if data_dir is None:
        raise SystemExit(
            "No pepper: set VENTRYX_PEPPER (64 hex characters) or VENTRYX_PEPPER_FILE. "
            "Keep it outside the database; losing it invalidates every API key."
        )
    path = dev_pepper_file(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    return _decode_pepper(path.read_text().strip(), str(path))


def _decode_pepper(value: str, source: str) -> bytes:
    try:
        pepper = bytes.fromhex(value)
    except ValueError:
        raise SystemExit(f"{source}: the pepper must be hex") from None
    if len(pepper) < 32:
        raise SystemExit(f"{source}: the pepper must be at least 32 bytes (64 hex characters)")
    return pepper

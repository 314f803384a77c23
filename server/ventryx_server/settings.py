"""Server settings, read from the environment unless a caller (a test, the CLI) passes them."""

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .addresses import AddressLimit, IpNetwork, parse_networks


def find_sql_dir() -> Path:
    """``sql/`` of the checkout in development, or the copy packed into the wheel."""
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


# Per-address limits: surface -> (environment variable, default REQUESTS/SECONDS).
ADDRESS_LIMITS = {
    "login": ("VENTRYX_LOGIN_LIMIT_PER_ADDRESS", "300/60"),
    "leak_report": ("VENTRYX_LEAK_REPORT_LIMIT_PER_ADDRESS", "120/60"),
    "failed_authentication": ("VENTRYX_FAILED_AUTH_LIMIT_PER_ADDRESS", "600/60"),
}


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
    connections_per_credential: int = 16
    # Rate limits and abuse resistance: see rate_limits.py, addresses.py, passwords.py.
    rate_limit_sync_seconds: float = 1.0
    trusted_proxies: tuple[IpNetwork, ...] = ()
    address_limits: dict[str, AddressLimit] = field(default_factory=lambda: {
        surface: AddressLimit.parse(default) for surface, (_, default) in ADDRESS_LIMITS.items()})
    password_hash_concurrency: int = field(default_factory=default_hash_concurrency)
    # Operations (metrics.py, logs.py): the metrics listener's HOST:PORT (None: none),
    # the worker processes sharing it (each takes the next free port), the log format.
    metrics_address: str | None = None
    workers: int = 1
    log_format: str = "text"
    # Behind a pooler in transaction mode (README "Connection poolers"): DATABASE_URL is
    # the pooler, and the event streams' LISTEN, which needs one session of its own for
    # as long as it runs, connects to listen_database_url (unset: DATABASE_URL).
    transaction_pooler: bool = False
    listen_database_url: str | None = None

    @property
    def listener_url(self) -> str:
        return self.listen_database_url or self.database_url

    @classmethod
    def from_env(cls) -> "Settings":
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise SystemExit("DATABASE_URL is not set")
        return cls(database_url=url, pepper=load_pepper(), **limits_from_env(),
                   **operations_from_env(), **usage_retention_from_env(),
                   **pooler_from_env(), **{
            name: _positive_seconds(variable, getattr(cls, name))
            for name, variable in _SECONDS_FROM_ENV.items()})


# Settings read from the environment, in seconds, each with the field's default.
_SECONDS_FROM_ENV = {
    "usage_flush_seconds": "VENTRYX_USAGE_FLUSH_SECONDS",
    "traffic_quiet_seconds": "VENTRYX_TRAFFIC_QUIET_SECONDS",
    "pool_timeout_seconds": "VENTRYX_POOL_TIMEOUT_SECONDS",
    "body_read_timeout_seconds": "VENTRYX_BODY_READ_TIMEOUT_SECONDS",
    "lock_timeout_seconds": "VENTRYX_LOCK_TIMEOUT_SECONDS",
    "statement_timeout_seconds": "VENTRYX_STATEMENT_TIMEOUT_SECONDS",
    "idle_in_transaction_timeout_seconds": "VENTRYX_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS",
}


def _positive_seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise SystemExit(f"{variable} must be a number of seconds above 0, got {text!r}")
    return value


def usage_retention_from_env() -> dict:
    """VENTRYX_USAGE_COUNTING, and VENTRYX_USAGE_MINUTES_KEEP_HOURS and
    VENTRYX_USAGE_HOURS_KEEP_DAYS in seconds."""
    found = {}
    if (counting := os.environ.get("VENTRYX_USAGE_COUNTING")) is not None:
        if counting not in ("on", "off"):
            raise SystemExit(f"VENTRYX_USAGE_COUNTING must be on or off, got {counting!r}")
        found["usage_counting"] = counting == "on"
    for name, variable, unit, most in (
            ("usage_minutes_keep_seconds", "VENTRYX_USAGE_MINUTES_KEEP_HOURS", 3600, 24 * 90),
            ("usage_hours_keep_seconds", "VENTRYX_USAGE_HOURS_KEEP_DAYS", 86400, 3660)):
        if (text := os.environ.get(variable)) is not None:
            try:
                found[name] = _within(float(text), 1, most) * unit
            except ValueError:
                raise SystemExit(f"{variable} must be a number from 1 to {most}, "
                                 f"got {text!r}") from None
    return found


def limits_from_env() -> dict:
    """The rate-limit settings of the VENTRYX_* variables; SystemExit names a bad one."""
    env = os.environ
    found: dict = {"address_limits": {}}

    def read(variable: str, parse):
        try:
            return parse(env[variable])
        except ValueError as exc:
            raise SystemExit(f"Invalid rate-limit setting {variable}={env[variable]!r}: "
                             f"{exc}") from None

    for surface, (variable, default) in ADDRESS_LIMITS.items():
        found["address_limits"][surface] = (read(variable, AddressLimit.parse)
                                            if variable in env else AddressLimit.parse(default))
    if "VENTRYX_RATE_LIMIT_SYNC_SECONDS" in env:
        found["rate_limit_sync_seconds"] = read("VENTRYX_RATE_LIMIT_SYNC_SECONDS",
                                                lambda v: _within(float(v), 0.01, 60))
    if "VENTRYX_TRUSTED_PROXIES" in env:
        found["trusted_proxies"] = read("VENTRYX_TRUSTED_PROXIES", parse_networks)
    if "VENTRYX_PASSWORD_HASH_CONCURRENCY" in env:
        found["password_hash_concurrency"] = read("VENTRYX_PASSWORD_HASH_CONCURRENCY",
                                                  lambda v: _within(int(v), 1, 1024))
    return found


def operations_from_env() -> dict:
    """VENTRYX_METRICS_ADDRESS, VENTRYX_LOG_FORMAT and the worker count the CLI passes."""
    from .logs import LOG_FORMATS
    from .metrics import parse_address

    env = os.environ
    found: dict = {"log_format": env.get("VENTRYX_LOG_FORMAT", "text"),
                   "workers": int(env.get("VENTRYX_WORKERS", "1"))}
    if found["log_format"] not in LOG_FORMATS:
        raise SystemExit(f"VENTRYX_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                         f"got {found['log_format']!r}")
    if address := env.get("VENTRYX_METRICS_ADDRESS"):
        try:
            parse_address(address)
        except ValueError as exc:
            raise SystemExit(f"VENTRYX_METRICS_ADDRESS={address!r}: {exc}") from None
        found["metrics_address"] = address
    return found


def pooler_from_env() -> dict:
    """VENTRYX_DATABASE_POOLER (none, transaction) and VENTRYX_LISTEN_DATABASE_URL."""
    env = os.environ
    pooler = env.get("VENTRYX_DATABASE_POOLER", "none")
    if pooler not in ("none", "transaction"):
        raise SystemExit(f"VENTRYX_DATABASE_POOLER must be none or transaction, got {pooler!r}")
    listen_url = env.get("VENTRYX_LISTEN_DATABASE_URL") or None
    if pooler == "transaction" and listen_url is None:
        raise SystemExit("VENTRYX_DATABASE_POOLER=transaction needs VENTRYX_LISTEN_DATABASE_URL: "
                         "event streams LISTEN on a direct connection to PostgreSQL, which a "
                         "pooler in transaction mode cannot give")
    return {"transaction_pooler": pooler == "transaction", "listen_database_url": listen_url}


def _within(value, low, high):
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}")
    return value


def load_pepper(data_dir: Path | None = None) -> bytes:
    """VENTRYX_PEPPER (hex), else VENTRYX_PEPPER_FILE, else ``pepper`` in the dev data folder."""
    if value := os.environ.get("VENTRYX_PEPPER"):
        return _decode_pepper(value, "VENTRYX_PEPPER")
    if path := os.environ.get("VENTRYX_PEPPER_FILE"):
        return _decode_pepper(Path(path).read_text().strip(), path)
    if data_dir is None:
        raise SystemExit(
            "No pepper: set VENTRYX_PEPPER (64 hex characters) or VENTRYX_PEPPER_FILE. "
            "Keep it outside the database; losing it invalidates every API key."
        )
    path = data_dir / "pepper"
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

"""One PostgreSQL, one real server process, and factories for organizations and keys.

PostgreSQL is ``DATABASE_URL``'s server when set (tests make and drop their own
databases on it), else the embedded one kept in ``.ventryx-test/``. The API under test
is a real ``ventryx-server serve`` process on loopback; its log is scanned for secrets.
With ``VENTRYX_TEST_PGBOUNCER=1`` every server process of the suite talks to PostgreSQL
through a real PgBouncer in transaction pooling mode (the ``pgbouncer`` fixture).
"""

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg
import httpx
import pytest

from ventryx_server import embedded, migrations
from ventryx_server.bootstrap import bootstrap
from ventryx_server.db import Queries
from ventryx_server.settings import find_sql_dir

ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = find_sql_dir()
TEST_PEPPER = bytes.fromhex("7e" * 32)
DATA_DIR = ROOT / ".ventryx-test"


@dataclass
class Org:
    id: str
    name: str
    owner_id: str
    owner_email: str
    owner_password: str
    admin_key_id: str
    admin_key: str

    def __repr__(self) -> str:
        return f"Org({self.id})"


@dataclass
class SecretLedger:
    """Every secret the suite has seen, so a test can prove none reached a log."""

    values: set[str] = field(default_factory=set)

    def add(self, value: str) -> str:
        self.values.add(value)
        return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def admin_url() -> str:
    if url := os.environ.get("DATABASE_URL"):
        return url
    return embedded.start(DATA_DIR)


async def create_scratch_database(admin_url: str, prefix: str = "vtx_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return embedded.database_url(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    name = url.split("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_migrated_database(admin_url: str, prefix: str = "vtx_test") -> str:
    """A scratch database with every migration applied."""
    url = await create_scratch_database(admin_url, prefix)
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn, SQL_DIR)
    finally:
        await conn.close()
    return url


@pytest.fixture(scope="session")
async def database_url(admin_url):
    url = await create_migrated_database(admin_url)
    yield url
    await drop_database(admin_url, url)


@pytest.fixture(scope="session")
async def db(database_url):
    """A pool on the test database, for setting up and for checking what was written."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def queries():
    return Queries.from_dir(SQL_DIR)


@pytest.fixture(scope="session")
def ledger() -> SecretLedger:
    return SecretLedger()


def wait_until_ready(process: subprocess.Popen, url: str, timeout: float) -> bool:
    """Polls /readyz until it answers 200 (True), the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class PgBouncer:
    """A real PgBouncer in transaction pooling mode in front of the test PostgreSQL: any
    database of it, under the same name, at ``url_for(database_url)``."""

    POOL_SIZE = 20  # server sessions per database, shared by every client connection

    def __init__(self, admin_url: str, folder: Path):
        target = urlsplit(admin_url)
        socket_dir = parse_qs(target.query).get("host", [target.hostname or "127.0.0.1"])[0]
        self.user = target.username or "postgres"
        self.port = free_port()
        self.log_path = folder / "pgbouncer.log"
        server = f"host={socket_dir} port={target.port or 5432} user={self.user}"
        if target.password:
            server += f" password={target.password}"
        config = folder / "pgbouncer.ini"
        config.write_text(f"""[databases]
* = {server}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {self.POOL_SIZE}
max_client_conn = 2000
query_wait_timeout = 5
logfile = {self.log_path}
""")
        command = [PGBOUNCER, str(config)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root: run as PostgreSQL's owner
            owner = Path(socket_dir).stat().st_uid if socket_dir.startswith("/") else None
            user = pwd.getpwuid(owner).pw_name if owner else "nobody"
            shutil.chown(folder, user)
            command[1:1] = ["-u", user]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._wait_listening(timeout=10)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        log = self.log_path.read_text() if self.log_path.exists() else ""
        self.stop()
        raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}")

    def url_for(self, database_url: str) -> str:
        database = urlsplit(database_url).path.lstrip("/")
        return f"postgresql://{quote(self.user)}@127.0.0.1:{self.port}/{database}"

    def server_env(self, database_url: str) -> dict[str, str]:
        """What a server process needs to use this pooler for ``database_url``'s database."""
        return {
            "DATABASE_URL": self.url_for(database_url),
            "VENTRYX_DATABASE_POOLER": "transaction",
            "VENTRYX_LISTEN_DATABASE_URL": database_url,
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture(scope="session")
def pgbouncer(admin_url):
    if PGBOUNCER is None:
        pytest.skip(
            "the pgbouncer binary is not installed (apt-get install -y pgbouncer; CI installs it)"
        )
    # Not under pytest's tmp_path: as root, PgBouncer runs as another user, who could not
    # enter pytest's private folder.
    folder = Path(tempfile.mkdtemp(prefix="ventryx-pgbouncer-"))
    try:
        bouncer = PgBouncer(admin_url, folder)
        yield bouncer
        bouncer.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class ServerProcess:
    """A real ``ventryx-server serve`` on a loopback port, logging to a file; with a
    ``pooler`` (or the suite's, under VENTRYX_TEST_PGBOUNCER=1), through that PgBouncer."""

    suite_pooler: PgBouncer | None = None

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        extra_env: dict | None = None,
        pooler: PgBouncer | None = None,
        workers: int = 1,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        pooler = pooler or self.suite_pooler
        database = pooler.server_env(database_url) if pooler else {"DATABASE_URL": database_url}
        env = {
            **os.environ,
            **database,
            "VENTRYX_PEPPER": TEST_PEPPER.hex(),
            "VENTRYX_USAGE_FLUSH_SECONDS": "0.2",
            **(extra_env or {}),
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ventryx_server",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        if not wait_until_ready(self.process, self.url, timeout):
            self.stop()  # never leave a server behind that no fixture will stop
            raise RuntimeError(f"server exited or not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture(scope="session", autouse=True)
def suite_behind_pgbouncer(request):
    """VENTRYX_TEST_PGBOUNCER=1: every server process of the suite goes through PgBouncer."""
    if os.environ.get("VENTRYX_TEST_PGBOUNCER") != "1":
        yield
        return
    ServerProcess.suite_pooler = request.getfixturevalue("pgbouncer")
    yield
    ServerProcess.suite_pooler = None


@pytest.fixture(scope="session")
def server_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


def secrets_found_in_logs(log_dir: Path, secrets_seen: set[str]) -> list[str]:
    """Which secrets (or their stored hashes) appear in any server log of the session."""
    from ventryx_server.auth import hash_secret

    text = "\n".join(path.read_text(errors="replace") for path in log_dir.glob("*.log"))
    found = []
    for secret in secrets_seen:
        forms = {secret, secret[9:-6] if len(secret) > 20 else secret}
        if secret.isascii():
            forms.add(hash_secret(TEST_PEPPER, secret).hex())
        if any(form in text for form in forms):
            found.append(secret[:12] + "…")
    return found


@pytest.fixture(scope="session")
def server(database_url, server_log_dir, ledger):
    process = ServerProcess(database_url, server_log_dir / "server-a.log")
    process.wait_ready()
    yield process
    process.stop()
    # Every secret any test created, checked against everything every server logged.
    leaked = secrets_found_in_logs(server_log_dir, ledger.values)
    assert not leaked, f"secrets reached the server log: {leaked}"


@pytest.fixture(scope="session")
def second_server(database_url, server_log_dir):
    """Another server process on the same database, as behind a load balancer."""
    process = ServerProcess(database_url, server_log_dir / "server-b.log")
    process.wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="session")
async def client(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_org(db, queries, ledger):
    """A new organization with its owner and an org:admin live key (as `bootstrap` makes)."""

    async def make(name: str = "Acme") -> Org:
        async with db.acquire() as conn:
            made = await bootstrap(
                conn,
                queries,
                TEST_PEPPER,
                org_name=name,
                owner_email=f"owner-{secrets.token_hex(4)}@example.com",
            )
        ledger.add(made.key)
        ledger.add(made.owner_password)
        return Org(
            made.org_id,
            name,
            made.owner_id,
            made.owner_email,
            made.owner_password,
            made.key_id,
            made.key,
        )

    return make


@pytest.fixture
async def org(make_org) -> Org:
    return await make_org()


@pytest.fixture
async def forget_local_login_failures(db):
    """Throttle counts are per client address, and every test (and the fuzzer) logs in
    from 127.0.0.1: each test starts and ends with that address's count cleared. Modules
    that log in use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``."""

    async def forget() -> None:
        async with db.acquire() as conn:
            await conn.execute("DELETE FROM login_attempts WHERE throttle_key LIKE 'address:%'")

    await forget()
    yield
    await forget()


@pytest.fixture
def make_key(client, ledger):
    """Creates a key through the API with an org's admin key; returns (id, key)."""

    async def make(
        org: Org, scopes: list[str], environment: str = "live", name: str = "test key", **extra
    ) -> tuple[str, str]:
        response = await client.post(
            "/v1/api-keys",
            headers=bearer(org.admin_key),
            json={"name": name, "scopes": scopes, "environment": environment, **extra},
        )
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        return data["id"], ledger.add(data["key"])

    return make


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)

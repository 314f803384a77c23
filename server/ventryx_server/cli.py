"""``ventryx-server``: dev, serve, migrate, bootstrap.

Every command uses DATABASE_URL when it is set, else the embedded PostgreSQL kept in
``--data-dir``.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from ventryx_shared import credentials_file

from . import embedded, migrations
from .bootstrap import Bootstrapped, bootstrap
from .db import Queries
from .logs import granian_config
from .migrations import Migration
from .settings import Settings, dev_pepper_file, find_sql_dir, load_pepper, values_from_env

DEFAULT_DATA_DIR = Path(".ventryx")
STOP_TIMEOUT_SECONDS = 4

_Result = TypeVar("_Result")


def _database_url(data_dir: Path) -> str:
    if url := os.environ.get("DATABASE_URL"):
        return url
    url = asyncio.run(embedded.ensure_database(embedded.start(data_dir)))
    print(f"Embedded PostgreSQL running from {data_dir / 'pgdata'}", file=sys.stderr)
    return url


def _pepper(data_dir: Path) -> bytes:
    return load_pepper(None if os.environ.get("DATABASE_URL") else data_dir)


async def _with_connection(
    url: str, work: Callable[[asyncpg.Connection], Awaitable[_Result]]
) -> _Result:
    # No statement cache: a few statements gain nothing from it, and DATABASE_URL may be
    # a pooler in transaction mode, where a named prepared statement may be gone.
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        return await work(conn)
    finally:
        await conn.close()


def _print_credentials(created: Bootstrapped, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "organization": {"id": created.org_id, "name": created.org_name},
                    "owner": {
                        "id": created.owner_id,
                        "email": created.owner_email,
                        "one_time_password": created.owner_password,
                    },
                    "api_key": {"id": created.key_id, "key": created.key, "scopes": ["org:admin"]},
                },
                indent=2,
            )
        )
        return
    print(f"""
Organization  {created.org_name} ({created.org_id})
Owner         {created.owner_email} ({created.owner_id})
  one-time password (change it at first login): {created.owner_password}
API key       {created.key_id}, scopes org:admin, live
  {created.key}

This key and password are shown once. Store them in your secrets manager now.
""")


def cmd_migrate(args: argparse.Namespace) -> int:
    sql_dir = find_sql_dir()
    if args.stamp:
        for name in migrations.stamp(sql_dir):
            print(f"stamped {name}")
        return 0
    url = _database_url(args.data_dir)

    async def run(conn: asyncpg.Connection) -> int:
        if args.print:
            for migration in await migrations.pending(conn, sql_dir):
                print(
                    f"-- {migration.filename}\n-- psql -v ON_ERROR_STOP=1 "
                    f"--single-transaction -f sql/migrations/{migration.filename}"
                )
                print(migration.up_sql())
            return 0
        done = await migrations.migrate(conn, sql_dir)
        for migration in done:
            print(f"applied {migration.filename}")
        if not done:
            print("schema is current")
        return 0

    return asyncio.run(_with_connection(url, run))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    url = _database_url(args.data_dir)
    pepper = _pepper(args.data_dir)
    queries = Queries.from_dir(find_sql_dir())

    async def run(conn: asyncpg.Connection) -> Bootstrapped:
        todo = await migrations.pending(conn, find_sql_dir())
        if todo:
            raise SystemExit("The schema is behind; run `ventryx-server migrate` first.")
        return await bootstrap(
            conn, queries, pepper, org_name=args.org, owner_email=args.owner_email
        )

    _print_credentials(asyncio.run(_with_connection(url, run)), args.json)
    return 0


def worker_environment(url: str, data_dir: Path, workers: int) -> dict[str, str]:
    """What the workers build their Settings from, besides the operator's variables. Every
    process they start inherits it too: it says where the pepper is, never what it is."""
    environment = {
        "DATABASE_URL": url,
        "VENTRYX_WORKERS": str(workers),
    }  # each worker's metrics port (metrics.py)
    if not os.environ.get("VENTRYX_PEPPER") and not os.environ.get("VENTRYX_PEPPER_FILE"):
        environment["VENTRYX_PEPPER_FILE"] = str(dev_pepper_file(data_dir).resolve())
    return environment


def _serve(url: str, data_dir: Path, host: str, port: int, workers: int) -> int:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    # Every setting is checked here, once, before any worker starts with it.
    settings = Settings(database_url=url, pepper=_pepper(data_dir), **values_from_env())

    async def check(conn: asyncpg.Connection) -> list[Migration]:
        return await migrations.pending(conn, find_sql_dir())

    todo = asyncio.run(_with_connection(url, check))
    if todo:
        print(
            "Refusing to serve: the database schema is behind. Pending: "
            + ", ".join(m.filename for m in todo)
            + ". Apply them with `ventryx-server migrate` or psql (sql/README.md).",
            file=sys.stderr,
        )
        return 2
    os.environ.update(worker_environment(url, data_dir, workers))
    # On SIGTERM/SIGINT each worker ends its event streams (event_stream.lifespan) and
    # finishes the requests in flight; a worker still busy after this long is killed, so
    # that stopping never hangs.
    Granian(
        "ventryx_server.app:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_access=False,
        workers_kill_timeout=STOP_TIMEOUT_SECONDS,
        backpressure=settings.max_connections,
        log_dictconfig=granian_config(settings.log_format),
        http1_settings=HTTP1Settings(
            header_read_timeout=round(settings.header_read_timeout_seconds * 1000)
        ),
    ).serve()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(_database_url(args.data_dir), args.data_dir, args.host, args.port, args.workers)


def cmd_dev(args: argparse.Namespace) -> int:
    url = _database_url(args.data_dir)
    pepper = _pepper(args.data_dir)
    sql_dir = find_sql_dir()
    queries = Queries.from_dir(sql_dir)

    async def prepare(conn: asyncpg.Connection) -> Bootstrapped | None:
        for migration in await migrations.migrate(conn, sql_dir):
            print(f"applied {migration.filename}", file=sys.stderr)
        if await conn.fetchval("SELECT count(*) FROM organizations"):
            return None
        return await bootstrap(
            conn, queries, pepper, org_name="Demo organization", owner_email="owner@example.com"
        )

    created = asyncio.run(_with_connection(url, prepare))
    server_url = f"http://{args.host}:{args.port}"
    if created is not None:
        print("First start: created a demo organization.")
        _print_credentials(created, as_json=False)
        try:
            saved = credentials_file.save(server_url, created.key)
            print(
                f"The dashboard will sign in with this key, saved to {saved} (mode 0600) "
                "next to any other server's.\n"
            )
        except credentials_file.CorruptCredentials as problem:
            # Never overwrite a file we cannot read: it may hold another server's only key.
            print(f"Not saved for the dashboard: {problem}; left as it is.\n")
    print(f"Serving the Ventryx API on {server_url} (OpenAPI at {server_url}/schema)", flush=True)
    return _serve(url, args.data_dir, args.host, args.port, args.workers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ventryx-server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=DEFAULT_DATA_DIR,
            help="where the embedded PostgreSQL keeps its data (default .ventryx)",
        )
        sub.set_defaults(handler=handler)
        return sub

    for name, handler, help_text in (
        ("dev", cmd_dev, "embedded PostgreSQL, migrations, a demo organization, and the API"),
        ("serve", cmd_serve, "serve the API; refuses to start on a schema that is behind"),
    ):
        sub = command(name, handler, help_text)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.add_argument("--workers", type=int, default=1, help="processes (one per core)")

    sub = command("migrate", cmd_migrate, "apply pending migrations")
    sub.add_argument("--print", action="store_true", help="print the pending SQL for a DBA")
    sub.add_argument(
        "--stamp",
        action="store_true",
        help="write each new migration file's checksum into its record line",
    )

    sub = command(
        "bootstrap",
        cmd_bootstrap,
        "a new organization with its owner and first org:admin key, printed once",
    )
    sub.add_argument("--org", required=True, help="the organization's name")
    sub.add_argument("--owner-email", default="owner@example.com")
    sub.add_argument("--json", action="store_true")

    args = parser.parse_args(argv)
    try:
        sys.exit(args.handler(args))
    except migrations.MigrationError as exc:
        print(f"ventryx-server {args.command}: {exc}", file=sys.stderr)
        sys.exit(2)

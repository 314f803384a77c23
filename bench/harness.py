"""What a benchmark module gives the runner, how load is generated, and how results are read.

A module ``bench/bench_<area>.py`` may define:

- ``BASELINE_ROUTES``: Litestar route handlers served by ``baseline_app.py``, the same stack
  as the server (granian, Litestar, msgspec, the server's pool, middleware and error
  handlers) minus authentication. Each takes ``db: asyncpg.Connection`` like the server's
  handlers do. Put them under ``/baseline/<area>/...``.
- ``async def prepare(ctx: BenchContext) -> list[Scenario]``: creates the data its
  scenarios need (through ``ctx.api`` or ``ctx.db``) and returns them. A scenario names
  its baseline scenario; the runner reports throughput as a ratio to it, round by round.
"""

import contextlib
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "request.lua"
LOADGEN = BENCH_DIR / "loadgen.py"


@dataclass(frozen=True)
class Scenario:
    name: str
    # "server" (the real `ventryx-server serve`) or "baseline" (baseline_app.py).
    target: str
    path: str
    method: str = "GET"
    # The credential sent as `Authorization: Bearer ...`; baselines get one too, and ignore
    # it, so both sides parse the same request bytes.
    token: str | None = field(default=None, repr=False)
    body: bytes | None = None
    # The name of the scenario this one is compared with; None for a baseline itself.
    baseline: str | None = None
    expect_status: int = 200


@dataclass
class BenchContext:
    server_url: str
    baseline_url: str
    database_url: str
    org_id: str
    admin_key_id: str
    admin_key: str = field(repr=False)
    api: httpx.AsyncClient
    db: asyncpg.Connection

    async def create_key(
        self, scopes: list[str], environment: str = "live", name: str = "bench key"
    ) -> tuple[str, str]:
        """A new key made through the API by the org's admin key: (id, token)."""
        response = await self.api.post(
            "/v1/api-keys",
            headers={"Authorization": f"Bearer {self.admin_key}"},
            json={"name": name, "scopes": scopes, "environment": environment},
        )
        if response.status_code != 201:
            raise RuntimeError(f"could not create a bench key: HTTP {response.status_code}")
        data = response.json()["data"]
        return data["id"], data["key"]


Prepare = Callable[[BenchContext], Awaitable[list[Scenario]]]


def discover_modules(only: set[str] | None = None) -> tuple[list[ModuleType], list[str]]:
    """Imports every bench/bench_*.py; a module that fails is reported, not fatal."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    modules, problems = [], []
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        if only and path.stem not in only:
            continue
        try:
            modules.append(importlib.import_module(path.stem))
        except Exception as exc:  # a teammate's half-written module must not stop the others
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
    return modules, problems


def baseline_routes(module_names: list[str]) -> list:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    routes = []
    for name in module_names:
        routes.extend(getattr(importlib.import_module(name), "BASELINE_ROUTES", []))
    return routes


@dataclass(frozen=True)
class Measurement:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int  # non-2xx/3xx responses and socket errors: a round with any is flagged
    # CPU time per request of the app's processes and of the PostgreSQL backends serving
    # the bench database, where /proc shows them. They move much less than req/s when
    # other work shares the machine.
    app_cpu_us: float | None = None
    db_cpu_us: float | None = None


def process_tree_cpu_seconds(root_pid: int, title_contains: str | None = None) -> float | None:
    """User + system CPU of a process and its descendants, from /proc (Linux only).

    With ``title_contains``, only processes whose command line holds it count: for
    PostgreSQL, the backends of one database ("postgres: user dbname ..."), leaving out
    autovacuum and checkpoints that earlier scenarios set off.
    """
    proc = Path("/proc")
    if not (proc / str(root_pid)).is_dir():
        return None
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses; the fields follow its last ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if title_contains is not None:
                title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if title_contains not in title:
                    fields[11] = fields[12] = "0"
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def request_env(scenario: Scenario) -> Iterator[dict[str, str]]:
    """The request travels in the environment, so no credential is on a command line.

    A body goes through a file: one environment string is limited to 128 KiB on Linux.
    """
    env = {**os.environ, "BENCH_METHOD": scenario.method}
    if scenario.token:
        env["BENCH_AUTHORIZATION"] = f"Bearer {scenario.token}"
    if scenario.body is None:
        yield env
        return
    with tempfile.NamedTemporaryFile(prefix="ventryx-bench-body-", suffix=".json") as body:
        body.write(scenario.body)
        body.flush()
        env["BENCH_BODY_FILE"] = body.name
        yield env


class Wrk:
    name = "wrk"

    def __init__(self, executable: str, threads: int):
        self.executable = executable
        self.threads = threads
        version = subprocess.run([executable, "--version"], capture_output=True, text=True)
        self.version = (version.stdout + version.stderr).split("Copyright")[0].strip()

    def run(self, url: str, scenario: Scenario, connections: int, seconds: float) -> Measurement:
        with request_env(scenario) as env:
            result = subprocess.run(
                # wrk's default 2 s timeout would count slow batch requests as errors.
                [
                    self.executable,
                    f"-t{self.threads}",
                    f"-c{connections}",
                    f"-d{seconds:g}s",
                    "--timeout",
                    "30s",
                    "--latency",
                    "-s",
                    str(WRK_SCRIPT),
                    url + scenario.path,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        return parse_wrk(result.stdout)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> Measurement:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)[1])
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)[1])
    requests = int(re.search(r"(\d+) requests in", output)[1])
    failures = 0
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        failures += int(non_2xx[1])
    if errors := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        failures += sum(int(n) for n in errors.groups())
    return Measurement(rps, p50, p99, requests, failures)


class PythonLoad:
    """Fallback when wrk is missing: asyncio keep-alive clients in their own process.

    It needs more CPU per request than wrk, and shares the machine with the server, so
    absolute numbers come out lower; ratios between scenarios stay comparable.
    """

    name = "python"
    version = "bench/loadgen.py (asyncio)"

    def run(self, url: str, scenario: Scenario, connections: int, seconds: float) -> Measurement:
        with request_env(scenario) as env:
            result = subprocess.run(
                [
                    sys.executable,
                    str(LOADGEN),
                    url + scenario.path,
                    "--connections",
                    str(connections),
                    "--seconds",
                    str(seconds),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        return Measurement(**json.loads(result.stdout))


def pick_load_generator(threads: int) -> "Wrk | PythonLoad":
    if executable := shutil.which("wrk"):
        return Wrk(executable, threads)
    print(
        "wrk not found, using the slower Python load generator. For comparable numbers "
        "install wrk: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`.",
        file=sys.stderr,
    )
    return PythonLoad()


def median(values: list[float]) -> float:
    return statistics.median(values)


async def probe(url: str, scenario: Scenario) -> None:
    """One request before any load: a benchmark of 401s or 404s measures nothing."""
    headers = {"Authorization": f"Bearer {scenario.token}"} if scenario.token else {}
    if scenario.body is not None:
        headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(
            scenario.method, url + scenario.path, headers=headers, content=scenario.body
        )
    if response.status_code != scenario.expect_status:
        raise RuntimeError(
            f"{scenario.name}: expected HTTP {scenario.expect_status}, got "
            f"{response.status_code}: {response.text[:300]}"
        )

"""Ventryx benchmark: ``uv run python bench/run.py`` (``--help`` for the knobs).

Starts an embedded PostgreSQL in a fresh temporary folder, migrates it, creates an
organization and keys, starts the real server (``ventryx-server serve``) and the baseline
app (bench/baseline_app.py: the same server plus routes without authentication) side by side, then
loads each scenario of every bench/bench_*.py over loopback, several rounds interleaved,
and prints requests/s, p50 and p99 per scenario and each one's throughput as a ratio to
its baseline, computed round by round. Everything is stopped and deleted at the end.
"""

import argparse
import asyncio
import atexit
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import profiling
from harness import (
    BENCH_DIR,
    BenchContext,
    Measurement,
    Scenario,
    discover_modules,
    median,
    pick_load_generator,
    probe,
    process_tree_cpu_seconds,
)

from ventryx_server import embedded, migrations
from ventryx_server.bootstrap import bootstrap
from ventryx_server.db import Queries
from ventryx_server.settings import find_sql_dir

ROOT = BENCH_DIR.parent
# The key-create scenario adds thousands of keys; the operator's way to allow that.
_OPERATOR = Queries("""
-- name: set-active-api-keys-quota!
UPDATE organizations SET max_active_api_keys = :quota WHERE org_id = :org_id;
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server process on a free loopback port, logging to a file in the run's folder."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_answering(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"{self.name} exited; its log:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not answer within {timeout:g}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def prepare_database(admin_url: str, pepper: bytes):
    database_url = await embedded.ensure_database(admin_url, f"bench_{secrets.token_hex(4)}")
    conn = await asyncpg.connect(database_url)
    try:
        await migrations.migrate(conn, find_sql_dir())
        queries = Queries.from_dir(find_sql_dir())
        org = await bootstrap(
            conn,
            queries,
            pepper,
            org_name="Benchmark organization",
            owner_email="bench@example.com",
        )
        # Rate limiting stays on (every request is counted and gets its headers), with a
        # limit the load never reaches: the benchmark measures its cost, not its refusals.
        await queries.update_organization(
            conn,
            org_id=org.org_id,
            name=None,
            rate_limit_requests=1_000_000_000,
            rate_limit_window_seconds=60,
            retention_days_live=None,
            retention_days_test=None,
        )
        await _OPERATOR.set_active_api_keys_quota(conn, org_id=org.org_id, quota=1_000_000)
    finally:
        await conn.close()
    return database_url, org


async def prepare_scenarios(
    modules, server: Process, baseline: Process, database_url: str, org
) -> tuple[list[Scenario], list[str]]:
    """Every module's scenarios that answer as they expect, and why the others were left out.

    One module's failure (a teammate's work in progress) must not stop the others.
    """
    prepared: list[Scenario] = []
    skipped: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
        conn = await asyncpg.connect(database_url)
        try:
            ctx = BenchContext(
                server.url, baseline.url, database_url, org.org_id, org.key_id, org.key, api, conn
            )
            for module in modules:
                if hasattr(module, "prepare"):
                    try:
                        prepared.extend(await module.prepare(ctx))
                    except Exception as exc:
                        skipped.append(
                            f"{module.__name__}: prepare() failed: {type(exc).__name__}: {exc}"
                        )
        finally:
            await conn.close()
    urls = {"server": server.url, "baseline": baseline.url}
    answering = []
    for scenario in prepared:
        try:
            await probe(urls[scenario.target], scenario)
            answering.append(scenario)
        except (RuntimeError, httpx.HTTPError) as exc:
            skipped.append(str(exc))
    names = {scenario.name for scenario in answering}
    scenarios = []
    for scenario in answering:
        if scenario.baseline and scenario.baseline not in names:
            skipped.append(f"{scenario.name}: its baseline {scenario.baseline!r} is not running")
        else:
            scenarios.append(scenario)
    return scenarios, skipped


def _median_of(runs: list[Measurement], attribute: str) -> float | None:
    values = [getattr(run, attribute) for run in runs]
    return None if None in values else median(values)


def report(scenarios: list[Scenario], results: dict[str, list[Measurement]], header: str) -> None:
    print(header)
    width = max(len(s.name) for s in scenarios) + 2
    print(
        f"{'scenario':<{width}}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'app µs':>8}{'db µs':>7}"
        f"{'ratio':>7}{'cpu ratio':>11}   ratio per round"
    )
    for scenario in scenarios:
        runs = results[scenario.name]
        app_us, db_us = _median_of(runs, "app_cpu_us"), _median_of(runs, "db_cpu_us")
        failed = sum(run.failures for run in runs)
        line = (
            f"{scenario.name:<{width}}{_median_of(runs, 'requests_per_second'):>8,.0f}"
            f"{_median_of(runs, 'p50_ms'):>8.2f}{_median_of(runs, 'p99_ms'):>8.2f}"
            + (f"{app_us:>8.0f}{db_us:>7.0f}" if app_us is not None else f"{'-':>8}{'-':>7}")
        )
        if scenario.baseline:
            base = results[scenario.baseline]
            ratios = [
                own.requests_per_second / other.requests_per_second
                for own, other in zip(runs, base, strict=True)
                if other.requests_per_second
            ]  # a round starved by other work: none
            base_app, base_db = _median_of(base, "app_cpu_us"), _median_of(base, "db_cpu_us")
            cpu_ratio = (
                (base_app + base_db) / (app_us + db_us)
                if app_us is not None and base_app is not None
                else None
            )
            line += (
                f"{median(ratios):>7.2f}"
                + (f"{cpu_ratio:>11.2f}" if cpu_ratio is not None else f"{'-':>11}")
                + "   "
                + " ".join(f"{r:.2f}" for r in ratios)
            )
        else:
            line += f"{'1.00':>7}{'1.00':>11}   (baseline)"
        if failed:
            line += f"   !! {failed} failed requests: not a valid measurement"
        print(line)
    print(
        "\nreq/s, p50, p99 and CPU are medians over the rounds. ratio: req/s over the baseline's "
        "in the same round, median of rounds.\napp µs / db µs: CPU time per request of the app's "
        "processes and of PostgreSQL's. cpu ratio: the baseline's (app + db) CPU per request\n"
        "over this scenario's, i.e. the throughput ratio to expect when CPU is the limit; it "
        "holds steady when other work shares the machine, req/s does not."
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=5, help="per scenario per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=2, help="seconds per scenario, unreported")
    parser.add_argument("--workers", type=int, default=1, help="server processes, for both apps")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the rounds, sample each scenario and its baseline with "
        "py-spy and print where the extra time per request goes",
    )
    parser.add_argument(
        "--compare-usage-counting",
        action="store_true",
        help="also run every server scenario against a server with usage "
        "counting off, and print what counting costs in ratio",
    )
    parser.add_argument(
        "--only",
        action="append",
        help="run only this bench module (e.g. bench_api_keys); repeatable",
    )
    args = parser.parse_args()

    load = pick_load_generator(args.threads)
    modules, problems = discover_modules(set(args.only) if args.only else None)
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not modules:
        raise SystemExit("no bench module to run")

    run_dir = Path(tempfile.mkdtemp(prefix="ventryx-bench-"))
    # Registered before PostgreSQL starts, so it runs after the embedded server's own
    # exit handler has stopped it (atexit runs last-registered first).
    atexit.register(shutil.rmtree, run_dir, True)
    pepper = secrets.token_bytes(32)
    admin_url = embedded.start(run_dir)
    database_url, org = asyncio.run(prepare_database(admin_url, pepper))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VENTRYX_PEPPER": pepper.hex(),
        "BENCH_MODULES": ",".join(module.__name__ for module in modules),
    }
    workers = ["--workers", str(args.workers)]
    server = Process(
        "server", [sys.executable, "-m", "ventryx_server", "serve", *workers], env, run_dir
    )
    troubled: list[str] = []
    baseline = Process(
        "baseline", [sys.executable, str(BENCH_DIR / "baseline_app.py"), *workers], env, run_dir
    )
    uncounted = (
        Process(
            "uncounted",
            [sys.executable, "-m", "ventryx_server", "serve", *workers],
            {**env, "VENTRYX_USAGE_COUNTING": "off"},
            run_dir,
        )
        if args.compare_usage_counting
        else None
    )
    try:
        server.wait_answering("/readyz")
        baseline.wait_answering("/")
        if uncounted:
            uncounted.wait_answering("/readyz")
        scenarios, skipped = asyncio.run(
            prepare_scenarios(modules, server, baseline, database_url, org)
        )
        problems += skipped
        for problem in skipped:
            print(f"skipped {problem}", file=sys.stderr)
        if not scenarios:
            raise SystemExit("no scenario left to run")
        urls = {"server": server.url, "baseline": baseline.url}
        pids = {"server": server.process.pid, "baseline": baseline.process.pid}
        if uncounted:
            scenarios += [
                replace(s, name=s.name + UNCOUNTED, target="uncounted")
                for s in scenarios
                if s.target == "server"
            ]
            urls["uncounted"], pids["uncounted"] = uncounted.url, uncounted.process.pid

        postmaster = int((run_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        backends_of = f" {database_url.split('?')[0].rsplit('/', 1)[1]} "

        def measure(scenario: Scenario, seconds: float) -> Measurement:
            app_before = process_tree_cpu_seconds(pids[scenario.target])
            db_before = process_tree_cpu_seconds(postmaster, backends_of)
            result = load.run(urls[scenario.target], scenario, args.connections, seconds)
            if result.failures:
                # Reported next to the figures rather than fatal: one scenario's trouble
                # should not throw away every other scenario's minutes of measurement.
                print(f"{scenario.name}: {result.failures} failed requests", file=sys.stderr)
                troubled.append(scenario.name)
            app_after = process_tree_cpu_seconds(pids[scenario.target])
            db_after = process_tree_cpu_seconds(postmaster, backends_of)
            if None in (app_before, app_after, db_before, db_after) or not result.requests:
                return result
            return replace(
                result,
                app_cpu_us=(app_after - app_before) / result.requests * 1e6,
                db_cpu_us=(db_after - db_before) / result.requests * 1e6,
            )

        for scenario in scenarios:
            measure(scenario, args.warmup)
        results: dict[str, list[Measurement]] = defaultdict(list)
        # A scenario runs right next to its baseline, so drift on a busy machine hits both
        # sides of a ratio alike; the order inside each family rotates from round to round.
        families: dict[str, list[Scenario]] = defaultdict(list)
        for scenario in scenarios:
            families[scenario.baseline or scenario.name].append(scenario)
        for round_number in range(args.rounds):
            order = []
            for family in families.values():
                shift = round_number % len(family)
                order += family[shift:] + family[:shift]
            for scenario in order:
                results[scenario.name].append(measure(scenario, args.seconds))
                print(
                    f"round {round_number + 1}/{args.rounds} {scenario.name}: "
                    f"{results[scenario.name][-1].requests_per_second:,.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
        if args.profile:
            profile_dir = Path(tempfile.mkdtemp(prefix="ventryx-profile-"))
            py_spy = profiling.find_py_spy()
            profiles = {}
            for scenario in scenarios:
                output = profile_dir / f"{len(profiles)}.txt"
                requests = profiling.record(
                    py_spy,
                    pids[scenario.target],
                    args.seconds,
                    output,
                    lambda scenario=scenario: measure(scenario, args.seconds - 1).requests,
                )
                profiles[scenario.name] = profiling.self_time_us(output, requests)
            for scenario in scenarios:
                if scenario.baseline:
                    profiling.print_difference(
                        scenario.name,
                        profiles[scenario.name],
                        profiles[scenario.baseline],
                        scenario.baseline,
                    )
            print(f"\npy-spy's collapsed stacks (flamegraph.pl input) are in {profile_dir}")
    finally:
        server.stop()
        baseline.stop()
        if uncounted:
            uncounted.stop()
        if troubled:  # the run folder is deleted at exit; keep what explains the failures
            log_copy = Path(tempfile.mkdtemp(prefix="ventryx-bench-logs-"))
            for process in (server, baseline):
                shutil.copy2(process.log_path, log_copy)
            print(
                f"failed requests in {', '.join(troubled)}: server logs kept in {log_copy}",
                file=sys.stderr,
            )

    server_version = asyncio.run(_server_version(admin_url))
    report(
        scenarios,
        results,
        header=(
            f"\nVentryx benchmark: {load.version}, {args.connections} connections"
            f"{f', {args.threads} thread(s)' if load.name == 'wrk' else ''}, "
            f"{args.seconds:g}s x {args.rounds} rounds interleaved after {args.warmup:g}s warm-up; "
            f"granian --workers {args.workers} for server and baseline; PostgreSQL "
            f"{server_version} (embedded); {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; app, database and load generator share the machine.\n"
        ),
    )
    report_cpu_comparisons(modules, scenarios, results)
    if uncounted:
        report_counting_cost(scenarios, results)
    for problem in problems:
        print(f"not measured: {problem}")
    return 0


UNCOUNTED = " [usage counting off]"


def report_cpu_comparisons(
    modules, scenarios: list[Scenario], results: dict[str, list[Measurement]]
) -> None:
    """The server CPU per request of one scenario over another's, for the pairs a module
    lists in CPU_COMPARISONS (measured in the same rounds, so sharing the machine moves
    both alike)."""
    names = {scenario.name for scenario in scenarios}
    pairs = [
        (one, other)
        for module in modules
        for one, other in getattr(module, "CPU_COMPARISONS", [])
        if one in names and other in names
    ]
    if not pairs:
        return
    print(
        "\nserver CPU per request (app µs, median of rounds), one scenario over another; "
        "per round in brackets"
    )
    for one, other in pairs:
        app_one, app_other = (
            _median_of(results[one], "app_cpu_us"),
            _median_of(results[other], "app_cpu_us"),
        )
        if app_one is None or app_other is None:
            print(f"  {one} / {other}: no CPU figures (/proc unreadable)")
            continue
        per_round = [
            mine.app_cpu_us / theirs.app_cpu_us
            for mine, theirs in zip(results[one], results[other], strict=True)
            if mine.app_cpu_us and theirs.app_cpu_us
        ]
        print(
            f"  {one} / {other}: {app_one:.0f} / {app_other:.0f} µs = "
            f"{app_one / app_other:.2f}   [" + " ".join(f"{r:.2f}" for r in per_round) + "]"
        )


def report_counting_cost(scenarios: list[Scenario], results: dict[str, list[Measurement]]) -> None:
    """Each server scenario's ratio to its baseline with usage counting on over the same
    with it off, in the same rounds (1.00: counting costs nothing)."""
    print(
        "\nusage counting on vs off, same baseline: req/s ratio (median of rounds), cpu "
        "ratio (CPU per request off / on), ratio per round"
    )
    for scenario in scenarios:
        off = results.get(scenario.name + UNCOUNTED)
        if scenario.target != "server" or not scenario.baseline or off is None:
            continue
        # The baseline's req/s cancels out of the ratio of ratios round by round; CPU per
        # request (app + database) is what holds steady on a machine others share.
        on = results[scenario.name]
        per_round = [
            mine.requests_per_second / other.requests_per_second
            for mine, other in zip(on, off, strict=True)
            if other.requests_per_second
        ]
        cpu_on = [_median_of(on, "app_cpu_us"), _median_of(on, "db_cpu_us")]
        cpu_off = [_median_of(off, "app_cpu_us"), _median_of(off, "db_cpu_us")]
        cpu = f"{sum(cpu_off) / sum(cpu_on):>6.3f}" if None not in cpu_on + cpu_off else f"{'-':>6}"
        print(
            f"  {scenario.name:<40}{median(per_round):>6.3f}{cpu}   "
            + " ".join(f"{r:.3f}" for r in per_round)
        )


async def _server_version(admin_url: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())

"""``run.py --profile``: where a scenario's extra time per request goes, next to its baseline.

py-spy samples the app's processes while the load runs. Samples are turned into CPU
microseconds per request, grouped by source file and by function, and the baseline's
figures are subtracted, so what remains is what the scenario pays that its baseline does
not (authentication, mostly). Asynchronous code makes inclusive times of event-loop
frames meaningless, so only self time (the innermost Python frame) is shown.
"""

import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

SAMPLE_RATE = 200  # per second; py-spy's default of 100 leaves too few samples per file

# "function (path/to/file.py:123)" with the line number optional (--nolineno).
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def find_py_spy() -> str:
    for candidate in (shutil.which("py-spy"), str(Path.home() / ".local/bin/py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("--profile needs py-spy: `uv tool install py-spy` (or pip install py-spy)")


def record(py_spy: str, pid: int, seconds: float, output: Path, load: Callable[[], int]) -> int:
    """Samples pid and its children while load() runs; returns load()'s request count."""
    # BENCH_PY_SPY_OPTIONS adds options, e.g. "--native" to see inside C extensions
    # (asyncpg's protocol, msgspec), which otherwise count as their Python caller's time.
    extra = shlex.split(os.environ.get("BENCH_PY_SPY_OPTIONS", ""))
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nolineno",
            "--rate",
            str(SAMPLE_RATE),
            "--format",
            "raw",
            "--duration",
            str(round(seconds)),
            "--output",
            str(output),
            *(extra or ["--nonblocking"]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # let it attach before the load starts
    requests = load()
    _, errors = spy.communicate(timeout=seconds + 30)
    if not output.exists():
        raise SystemExit(f"py-spy recorded nothing: {errors[-500:]}")
    return requests


def self_time_us(collapsed: Path, requests: int) -> tuple[Counter, Counter]:
    """(µs per request by file, µs per request by 'file: function') of self time."""
    by_file: Counter = Counter()
    by_function: Counter = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = _FRAME.match(stack.split(";")[-1])
        if not leaf:
            continue
        us = int(count) / SAMPLE_RATE / requests * 1e6
        file = _short(leaf["file"])
        by_file[file] += us
        by_function[f"{file}: {leaf['function']}"] += us
    return by_file, by_function


def _short(path: str) -> str:
    for marker in ("site-packages/", "/ventryx_server/", "/bench/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail if marker == "site-packages/" else marker.strip("/") + "/" + tail
    return path


def print_difference(
    name: str,
    own: tuple[Counter, Counter],
    base: tuple[Counter, Counter],
    baseline_name: str,
    top: int = 15,
) -> None:
    for title, mine, theirs in (("file", own[0], base[0]), ("function", own[1], base[1])):
        extra = {key: mine[key] - theirs.get(key, 0.0) for key in set(mine) | set(theirs)}
        total_own, total_base = sum(mine.values()), sum(theirs.values())
        print(
            f"\n{name}: sampled Python CPU {total_own:.0f} µs/request, "
            f"{baseline_name}: {total_base:.0f}; largest differences by {title} "
            "(µs per request, + means the scenario spends more):"
        )
        for key, value in sorted(extra.items(), key=lambda item: -abs(item[1]))[:top]:
            print(f"  {value:+8.1f}  {key}")

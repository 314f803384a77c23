"""What usage counting adds per request, measured where a busy shared machine cannot blur
it: the in-memory count of the request hook (CPU per call, same-run baseline: the same
loop with counting off), as a share of the ~340 µs of app CPU an authenticated read
costs (PERFORMANCE.md).

    uv run python bench/usage_cost.py
"""

import statistics
import time

from ventryx_server.auth import Credential
from ventryx_server.usage import UsageCounts

READ_APP_CPU_NS = 340_000  # PERFORMANCE.md: an authenticated key read, server CPU


def per_call_ns(function, calls: int = 200_000, repeats: int = 7) -> float:
    """Median over repeats of the time per call, in ns."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(samples)


def main() -> None:
    on, off = UsageCounts(), UsageCounts(enabled=False)
    credential = Credential("api_key", "l" * 12, b"h" * 32, "live")
    counted = per_call_ns(lambda: on.count(credential, "success"))
    uncounted = per_call_ns(lambda: off.count(credential, "success"))
    extra = counted - uncounted
    print(
        f"count(): {counted:.0f} ns, with counting off {uncounted:.0f} ns: +{extra:.0f} ns "
        f"per request = {extra / READ_APP_CPU_NS:.3%} of an authenticated read's app CPU"
    )


if __name__ == "__main__":
    main()

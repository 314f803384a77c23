"""Charts drawn with characters: a one-line sparkline and a stacked bar chart by outcome.

Every series has a shape of its own (a block, a shade, a letter) as well as a colour, so
the charts read the same under NO_COLOR and on a 16-colour terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from math import ceil

from rich.text import Text

from ventryx_shared.usage import UsageBucket

LEVELS = "▁▂▃▄▅▆▇█"
# A bucket with nothing in it: a dot, so "no traffic" differs from "a little".
NOTHING = "·"


@dataclass(frozen=True)
class Outcome:
    field: str
    label: str
    mark: str
    style: str


# Bottom to top in a stacked bar.
OUTCOMES = (
    Outcome("success", "success", "█", "green"),
    Outcome("denied_scope", "403 no scope", "▒", "yellow"),
    Outcome("rate_limited", "429 limited", "░", "magenta"),
    Outcome("revoked_or_expired", "401 revoked/expired", "x", "red"),
)


def grouped(values: Sequence[int], width: int) -> list[int]:
    """``values`` summed into at most ``width`` groups of equal size, the newest group last
    (the oldest group may be short)."""
    if len(values) <= width:
        return list(values)
    size = ceil(len(values) / width)
    head = len(values) % size
    groups = [sum(values[:head])] if head else []
    groups += [sum(values[start : start + size]) for start in range(head, len(values), size)]
    return groups


def sparkline(values: Sequence[int], width: int) -> str:
    """One character per group, scaled to the largest group; ``·`` where it was zero."""
    groups = grouped(values, width)
    peak = max(groups, default=0)
    if peak == 0:
        return NOTHING * len(groups)
    return "".join(
        NOTHING if value == 0 else LEVELS[ceil(value / peak * len(LEVELS)) - 1] for value in groups
    )


def bucket_total(bucket: UsageBucket) -> int:
    return sum(getattr(bucket, outcome.field) for outcome in OUTCOMES)


def _stack(bucket: UsageBucket, cells: int) -> list[Outcome]:
    """The ``cells`` marks of one bar, bottom first, shared out by count; each outcome
    that happened gets at least one cell, so a single refusal never vanishes."""
    counts = [(outcome, getattr(bucket, outcome.field)) for outcome in OUTCOMES]
    present = [(outcome, count) for outcome, count in counts if count]
    total = sum(count for _outcome, count in present)
    cells = max(cells, len(present))
    shares = [(outcome, max(1, round(count / total * cells))) for outcome, count in present]
    while sum(share for _o, share in shares) > cells:  # rounding gave too many: trim the largest
        index = max(range(len(shares)), key=lambda i: shares[i][1])
        shares[index] = (shares[index][0], shares[index][1] - 1)
    while sum(share for _o, share in shares) < cells:
        index = max(range(len(shares)), key=lambda i: present[i][1])
        shares[index] = (shares[index][0], shares[index][1] + 1)
    return [outcome for outcome, share in shares for _ in range(share)]


def outcome_chart(
    buckets: Sequence[UsageBucket], height: int, bar_width: int, label: Callable[[datetime], str]
) -> Text:
    """A stacked bar per bucket, oldest left, with the peak on the y axis and the first
    and last buckets' ``label`` under the x axis."""
    totals = [bucket_total(bucket) for bucket in buckets]
    peak = max(totals, default=0)
    bars = [
        _stack(bucket, ceil(total / peak * height)) if total else []
        for bucket, total in zip(buckets, totals, strict=True)
    ]
    axis_width = max(len(str(peak)), 1) + 1
    chart = Text(no_wrap=True, overflow="crop")
    for row in range(height, 0, -1):
        tick = str(peak) if row == height else ("0" if row == 1 and peak == 0 else "")
        chart.append(f"{tick:>{axis_width - 1}} │")
        for bar in bars:
            outcome = bar[row - 1] if len(bar) >= row else None
            if outcome is None:
                chart.append(" " * bar_width)
            else:
                chart.append(outcome.mark * bar_width, style=outcome.style)
        chart.append("\n")
    chart.append(" " * (axis_width - 1) + " └" + "─" * (bar_width * len(buckets)) + "\n")
    if buckets:
        first, last = label(buckets[0].start), label(buckets[-1].start)
        gap = bar_width * len(buckets) - len(first) - len(last)
        chart.append(" " * (axis_width + 1) + first + " " * max(gap, 1) + last)
    return chart


def legend(buckets: Sequence[UsageBucket]) -> Text:
    """Each outcome's mark, name and total over the chart."""
    line = Text()
    for outcome in OUTCOMES:
        total = sum(getattr(bucket, outcome.field) for bucket in buckets)
        if line:
            line.append("  ")
        line.append(outcome.mark, style=outcome.style)
        line.append(f" {outcome.label} {total:,}")
    return line

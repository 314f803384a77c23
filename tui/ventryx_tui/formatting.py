"""How values are drawn in tables. Everything that changes from run to run (times, ids,
key tails) goes through here, so snapshot tests can hold it still."""

from __future__ import annotations

from datetime import UTC, datetime


def _parse(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def now() -> datetime:
    return datetime.now(UTC)


def _in_utc(value: datetime | str | None, pattern: str, empty: str) -> str:
    moment = _parse(value)
    return empty if moment is None else moment.astimezone(UTC).strftime(pattern)


def timestamp(value: datetime | str | None, empty: str = "-") -> str:
    """``2026-04-02 10:00`` in UTC: short enough for an 80-column table."""
    return _in_utc(value, "%Y-%m-%d %H:%M", empty)


def time_of_day(value: datetime | str | None, empty: str = "-") -> str:
    """``10:00:05``: enough for a live tail; the detail view has the full time."""
    return _in_utc(value, "%H:%M:%S", empty)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def date(value: datetime | str | None, empty: str = "-") -> str:
    return _in_utc(value, "%Y-%m-%d", empty)


def precise(value: datetime | str | None, empty: str = "-") -> str:
    return _in_utc(value, "%Y-%m-%d %H:%M:%SZ", empty)


def relative(value: datetime | str | None, empty: str = "never") -> str:
    """``3m ago`` / ``in 2h``: how long ago or ahead, to the largest whole unit."""
    moment = _parse(value)
    if moment is None:
        return empty
    seconds = int((moment - now()).total_seconds())
    ahead, seconds = seconds > 0, abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            amount = f"{seconds // size}{unit}"
            break
    else:
        amount = f"{seconds}s"
    return f"in {amount}" if ahead else f"{amount} ago"


def identifier(value: str | None) -> str:
    return value or "-"


def address(url: str) -> str:
    return url


def redacted_key(value: str) -> str:
    return value


def duration(seconds: int) -> str:
    if seconds == 0:
        return "immediately"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def hour(value: datetime | str | None, empty: str = "-") -> str:
    """``14:00``: the start of an hour on a chart's axis (UTC)."""
    return _in_utc(value, "%H:00", empty)


def day(value: datetime | str | None, empty: str = "-") -> str:
    """``04-02``: a day on a chart's axis (UTC)."""
    return _in_utc(value, "%m-%d", empty)


def rate(count: int, minutes: int) -> str:
    """``4``, ``0.3``, ``<0.1``: ``count`` events over ``minutes``, per minute."""
    per_minute = count / minutes
    if count and per_minute < 0.1:
        return "<0.1"
    if per_minute >= 10 or per_minute == int(per_minute):
        return f"{per_minute:,.0f}"
    return f"{per_minute:.1f}"

"""Events per minute of the caller's organization and environment: the overview's chart.

Counted from the events table itself, so it needs no bookkeeping on the emit path; the
count is one index range over the window's events (sql/queries/event_rate.sql).
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar import Controller, Request, get
from litestar.params import Parameter

from ventryx_shared.common import Data
from ventryx_shared.event_rate import MAX_MINUTES, EventRate, EventRateBucket

from ..auth import authorized, caller_params, require_credential
from ..db import Db

READ = {"scope": "events:read"}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# An event's id is minted just before its insert; the hosts' clocks are assumed to agree
# with the database's within this much (as for reads by id, 0018_event_partitions).
_CLOCK_AGREEMENT = timedelta(hours=1)


def lowest_event_id(moment: datetime) -> str:
    """The smallest event id a ULID minted at ``moment`` can have (its 48 time bits, then
    zeros), so ``id >= it`` is an index range."""
    milliseconds = int(moment.timestamp() * 1000)
    time_part = "".join(_CROCKFORD[(milliseconds >> shift) & 31] for shift in range(45, -1, -5))
    return f"evt_{time_part}{'0' * 16}"


class EventRateController(Controller):
    path = "/v1/events/rate"
    tags = ["Events"]
    before_request = require_credential

    @get("/", operation_id="getEventRate", opt=READ)
    async def get_event_rate(
        self, request: Request, db: Db,
        minutes: Annotated[int, Parameter(
            ge=1, le=MAX_MINUTES,
            description="How many minutes, the current one (partial) last")] = MAX_MINUTES,
    ) -> Data[EventRate]:
        """Events received per minute in this environment, oldest first, zero-filled."""
        current_minute = datetime.now(UTC).replace(second=0, microsecond=0)
        since = current_minute - timedelta(minutes=minutes - 1)
        rows = await request.app.state.queries.event_rate(
            db, **caller_params(request), since=since, minutes=minutes,
            lowest_id=lowest_event_id(since - _CLOCK_AGREEMENT))
        await authorized(db, request, rows[0] if rows else None)
        return Data(EventRate(
            since=since, until=current_minute + timedelta(minutes=1),
            buckets=[EventRateBucket(start=row["bucket_start"], events=row["events"])
                     for row in rows]))

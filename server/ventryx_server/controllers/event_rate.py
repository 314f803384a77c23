"""Events per minute of the caller's organization and environment: the overview's chart.

Counted from the events table itself, so it needs no bookkeeping on the emit path; the
count is one index range over the window's events (sql/queries/event_rate.sql).
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.common import Data
from ventryx_shared.event_rate import MAX_MINUTES, EventRate, EventRateBucket
from ventryx_shared.ids import lowest_id

from ..auth import authorized, caller_params, require_credential
from ..db import Db
from ..request_type import AppRequest

READ = {"scope": "events:read"}
# An event's id is minted just before its insert; the hosts' clocks are assumed to agree
# with the database's within this much (as for reads by id, 0018_event_partitions).
_CLOCK_AGREEMENT = timedelta(hours=1)


class EventRateController(Controller):
    path = "/events/rate"
    tags = ["Events"]
    before_request: BeforeRequestHookHandler = require_credential

    @get("/", operation_id="getEventRate", opt=READ)
    async def get_event_rate(
        self,
        request: AppRequest,
        db: Db,
        minutes: Annotated[
            int,
            Parameter(
                ge=1, le=MAX_MINUTES, description="How many minutes, the current one (partial) last"
            ),
        ] = MAX_MINUTES,
    ) -> Data[EventRate]:
        """Events received per minute in this environment, oldest first, zero-filled."""
        current_minute = datetime.now(UTC).replace(second=0, microsecond=0)
        since = current_minute - timedelta(minutes=minutes - 1)
        rows = await request.app.state.queries.event_rate(
            db,
            **caller_params(request),
            since=since,
            minutes=minutes,
            lowest_id=lowest_id("evt", (since - _CLOCK_AGREEMENT).timestamp()),
        )
        await authorized(db, request, rows[0] if rows else None)
        return Data(
            EventRate(
                since=since,
                until=current_minute + timedelta(minutes=1),
                buckets=[
                    EventRateBucket(start=row["bucket_start"], events=row["events"]) for row in rows
                ],
            )
        )

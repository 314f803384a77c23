"""Events: emit one, emit a batch, list, get, the gapless feed and the live stream.

An emit without an Idempotency-Key is one statement (one round trip): it locks the
caller's key against revocation, inserts and records the matching workflows. With a
key, the same statement runs inside the transaction that claims the key. A batch is one
transaction: the caller locked and the workflows matched, then every event written by
one COPY (event_batches.py). Once committed, the streams of every server process are
woken (event_stream.announce).

The feed (GET /v1/events/feed) and the stream read events in the order of
sql/migrations/0015_event_feed.up.sql, which no later commit can change.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import HeaderParameter, JSONBody, Parameter
from litestar.response import Stream
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.common import Data, ErrorBody, Page
from ventryx_shared.events import (
    MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    TYPE_FILTER_EXACT_PATTERN,
    BatchErrorBody,
    BatchErrorDetail,
    BatchItemError,
    Event,
    EventBatchCreate,
    EventCreate,
    check_time,
    encode_bounded_json,
    parse_type_filter,
)
from ventryx_shared.ids import id_pattern, is_id, new_id, new_ids

from .. import event_stream, idempotency
from ..auth import authorized, caller_params, lock_caller, require_credential
from ..db import Db
from ..errors import (
    InvalidRequest,
    UnprocessableEntity,
    no_such,
    request_id_of,
)
from ..event_batches import batch_events, copy_batch
from ..request_type import AppRequest
from ..stream_messages import event_from_row
from ..stream_subscription import TypeFilter, type_filter_params
from .pagination import Limit, StartingAfter, cursor, page
from .reads import authorized_one, authorized_page

READ = {"scope": "events:read"}
WRITE = {"scope": "events:write"}
EventId = Annotated[str, Parameter(description="The event's id, evt_…", max_length=64)]
TypeQuery = Annotated[
    str | None,
    Parameter(
        max_length=128,
        description="An event type (order.created) or a prefix (order.*)",
        schema_extra={"pattern": TYPE_FILTER_EXACT_PATTERN},
    ),
]
# The refusals of the feed and the stream beyond those of every operation.
_CURSOR_REFUSALS = {
    400: ResponseSpec(ErrorBody, description="A malformed cursor or type filter"),
    404: ResponseSpec(
        ErrorBody, description="The cursor names no event of this organization and environment"
    ),
}
# A batch may carry up to 500 payloads of up to 64 KB each; other bodies stay at 1 MB.
MAX_BATCH_BODY_BYTES = 8 * 1024 * 1024


class _RawBatch(msgspec.Struct, forbid_unknown_fields=True):
    # Items stay raw so that each is validated on its own and every bad one is reported.
    events: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


_decode_batch = msgspec.json.Decoder(_RawBatch).decode
_decode_valid_batch = msgspec.json.Decoder(EventBatchCreate).decode
_decode_event = msgspec.json.Decoder(EventCreate).decode


@dataclass
class _BatchOperation(Operation):
    """The batch handler reads its body itself; this documents what it reads."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": (
                    OpenAPIMediaType(
                        schema=Schema(
                            type=OpenAPIType.OBJECT,
                            required=["events"],
                            properties={
                                "events": Schema(
                                    type=OpenAPIType.ARRAY,
                                    min_items=1,
                                    max_items=MAX_BATCH,
                                    items=Reference(ref="#/components/schemas/EventCreate"),
                                )
                            },
                        )
                    )
                )
            },
        )


def payload_json(item: EventCreate) -> str:
    """The event's payload as JSON for the insert, or 422 naming what cannot be stored."""
    try:
        if item.occurred_at is not None:
            check_time(item.occurred_at, "occurred_at")
    except ValueError as exc:
        raise UnprocessableEntity(str(exc), param="occurred_at") from None
    try:
        return encode_bounded_json(item.payload, MAX_PAYLOAD_BYTES, "payload").decode()
    except ValueError as exc:
        raise UnprocessableEntity(str(exc), code="invalid_payload", param="payload") from None


def _storable_payload(item: EventCreate) -> bytes:
    # For batches: ValueError("occurred_at ...") or ValueError("payload ...").
    if item.occurred_at is not None:
        check_time(item.occurred_at, "occurred_at")
    return encode_bounded_json(item.payload, MAX_PAYLOAD_BYTES, "payload")


def emitted_event(row: Any, item: EventCreate) -> Event:
    # The statement returns what the server decided; type and payload are what was sent.
    return Event(
        id=row["id"],
        type=item.type,
        payload=item.payload,
        occurred_at=row["occurred_at"],
        created_at=row["created_at"],
        environment=row["environment"],
        matched_workflows=list(row["matched_workflows"]),
        emitted_by=row["emitted_by"],
    )


def _item_error(index: int, exc: Exception) -> BatchItemError:
    message, _, path = str(exc).partition(" - at `")
    param = f"events[{index}]" + path.rstrip("`").removeprefix("$") if path else None
    if isinstance(exc, ValueError) and str(exc).startswith(("payload", "occurred_at")):
        field = str(exc).split(" ", 1)[0]
        return BatchItemError(
            index=index, code=f"invalid_{field}", message=message, param=f"events[{index}].{field}"
        )
    code = (
        "unknown_field"
        if message.startswith("Object contains unknown field")
        else ("invalid_value")
    )
    return BatchItemError(index=index, code=code, message=message, param=param)


# Response[Any]: the events handler returns it in place of its own response type.
def _batch_refused(request: AppRequest, errors: list[BatchItemError], total: int) -> Response[Any]:
    detail = BatchErrorDetail(
        type="invalid_request_error",
        code="invalid_batch",
        param="events",
        message=f"{len(errors)} of {total} events are invalid; none was written.",
        request_id=request_id_of(request),
        errors=errors,
    )
    return Response(
        content=msgspec.json.encode(BatchErrorBody(detail)),
        status_code=422,
        media_type="application/json",
    )


def _parse_batch(body: bytes) -> _RawBatch:
    try:
        return _decode_batch(body)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        param = path.rstrip("`").removeprefix("$.") or "events"
        raise UnprocessableEntity(message, code="invalid_value", param=param) from None
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None


def read_batch(body: bytes) -> tuple[list[EventCreate], list[bytes], list[BatchItemError]]:
    """A batch body's valid events with their payloads as JSON, and what is wrong with each
    invalid one. Raises for a body that is not a batch at all (not JSON, no events list,
    too many)."""
    try:
        items = _decode_valid_batch(body).events  # the common case: one pass in C
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _read_batch_item_by_item(body)
    storable: list[EventCreate] = []
    payloads: list[bytes] = []
    errors: list[BatchItemError] = []
    for index, item in enumerate(items):
        try:
            payloads.append(_storable_payload(item))
            storable.append(item)
        except ValueError as exc:
            errors.append(_item_error(index, exc))
    return storable, payloads, errors


def _read_batch_item_by_item(
    body: bytes,
) -> tuple[list[EventCreate], list[bytes], list[BatchItemError]]:
    batch = _parse_batch(body)
    items: list[EventCreate] = []
    payloads: list[bytes] = []
    errors: list[BatchItemError] = []
    for index, raw in enumerate(batch.events):
        try:
            item = _decode_event(raw)
            payloads.append(_storable_payload(item))
            items.append(item)
        except (msgspec.ValidationError, ValueError) as exc:
            errors.append(_item_error(index, exc))
        except (msgspec.DecodeError, RecursionError):
            errors.append(
                BatchItemError(
                    index=index,
                    code="invalid_json",
                    message="This event is not valid JSON.",
                    param=f"events[{index}]",
                )
            )
    return items, payloads, errors


def _type_filter(type: str | None) -> TypeFilter | None:
    try:
        return None if type is None else parse_type_filter(type)
    except ValueError as exc:
        raise InvalidRequest(str(exc), code="invalid_parameter", param="type") from None


def _event_cursor(value: str | None, param: str) -> str | None:
    if value and not is_id("evt", value):
        raise InvalidRequest(
            f"{param} must be an event id of the form evt_….", code="invalid_parameter", param=param
        )
    return value or None


def _time_filter(value: datetime | None, name: str) -> datetime | None:
    try:
        if value is not None:
            check_time(value, name)
    except ValueError as exc:
        raise InvalidRequest(f"{exc}.", code="invalid_parameter", param=name) from None
    return value


class EventsController(Controller):
    path = "/events"
    tags = ["Events"]
    before_request: BeforeRequestHookHandler = require_credential

    @post("/", operation_id="createEvent", opt=WRITE, status_code=201)
    async def create_event(
        self, request: AppRequest, db: Db, data: JSONBody[EventCreate]
    ) -> Response[Data[Event]]:
        """Emit one event; a retry with the same Idempotency-Key never makes a second one."""
        queries = request.app.state.queries
        params = {
            **caller_params(request),
            "id": new_id("evt"),
            "type": data.type,
            "payload": payload_json(data),
            "occurred_at": data.occurred_at,
        }
        if idempotency.idempotency_key(request) is None:
            row = await authorized(db, request, await queries.emit_event(db, **params))
            event_stream.announce(request.app, row["org_id"], row["environment"])
            return Response(Data(emitted_event(row, data)), status_code=201)
        async with db.transaction():
            caller = await lock_caller(db, request)
            if replay := await idempotency.claim(db, request, caller.org_id):
                return replay
            row = await authorized(db, request, await queries.emit_event(db, **params))
            body = Data(emitted_event(row, data))
            await idempotency.remember(db, request, caller.org_id, 201, msgspec.json.encode(body))
        event_stream.announce(request.app, row["org_id"], row["environment"])
        return Response(body, status_code=201)

    @post(
        "/batch",
        operation_id="createEventBatch",
        opt=WRITE,
        status_code=201,
        operation_class=_BatchOperation,
        request_max_body_size=MAX_BATCH_BODY_BYTES,
    )
    async def create_event_batch(self, request: AppRequest, db: Db) -> Response[Data[list[Event]]]:
        """Emit up to 500 events in one transaction: all are written, or none and every
        invalid item is named."""
        items, payloads, errors = read_batch(await request.body())
        if errors:
            return _batch_refused(request, errors, len(errors) + len(items))
        ids = new_ids("evt", len(items))
        remembered = idempotency.idempotency_key(request) is not None
        async with db.transaction():
            if remembered:
                caller = await lock_caller(db, request)
                if replay := await idempotency.claim(db, request, caller.org_id):
                    return replay
            row, matches = await copy_batch(db, request, ids, items, payloads)
            body = Data(batch_events(row, matches, ids, items, payloads))
            if remembered:
                await idempotency.remember(
                    db, request, row["org_id"], 201, msgspec.json.encode(body)
                )
        event_stream.announce(request.app, row["org_id"], row["environment"])
        return Response(body, status_code=201)

    @get("/", operation_id="listEvents", opt=READ)
    async def list_events(
        self,
        request: AppRequest,
        db: Db,
        limit: Limit = 20,
        starting_after: StartingAfter = None,
        type: TypeQuery = None,
        since: Annotated[
            datetime | None, Parameter(description="Only events received at or after this time")
        ] = None,
        until: Annotated[
            datetime | None, Parameter(description="Only events received before this time")
        ] = None,
    ) -> Page[Event]:
        """List the environment's events, newest first."""
        return await authorized_page(
            db,
            request,
            request.app.state.queries.list_events,
            event_from_row,
            limit,
            **type_filter_params(_type_filter(type)),
            since=_time_filter(since, "since"),
            until=_time_filter(until, "until"),
            starting_after=cursor("evt", starting_after),
        )

    @get("/feed", operation_id="feedEvents", opt=READ, responses=_CURSOR_REFUSALS)
    async def feed_events(
        self,
        request: AppRequest,
        db: Db,
        limit: Limit = 20,
        type: TypeQuery = None,
        after: Annotated[
            str | None,
            Parameter(
                max_length=64,
                description="The id of the last event received; omitted: from the first event",
                schema_extra={"pattern": id_pattern("evt")},
            ),
        ] = None,
    ) -> Page[Event]:
        """The environment's events oldest first, in an order no later commit changes:
        pass the last id received as `after` and no event is ever skipped or repeated."""
        type_filter = _type_filter(type)
        after = _event_cursor(after, "after")
        rows = await request.app.state.queries.events_feed(
            db,
            **caller_params(request),
            after=after,
            limit=limit + 1,
            **type_filter_params(type_filter),
        )
        await authorized(db, request, rows[0] if rows else None)
        if after is not None and rows[0]["cursor_id"] is None:
            raise no_such("event", after, "after")
        items, has_more = page([event_from_row(r) for r in rows if r["id"] is not None], limit)
        return Page(items, has_more)

    @get("/stream", operation_id="streamEvents", opt=READ, responses=_CURSOR_REFUSALS)
    async def stream_events(
        self,
        request: AppRequest,
        db: Db,
        type: TypeQuery = None,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                max_length=64,
                description="Replay what came after this event, then go on live",
                schema_extra={"pattern": id_pattern("evt")},
            ),
        ] = None,
        follow: Annotated[
            bool, Parameter(description="false: send what came after Last-Event-ID, then end")
        ] = True,
    ) -> Stream:
        """Server-sent events of new events in the caller's environment, from every server
        process, in the feed's order; reconnecting with Last-Event-ID sends every event
        committed after that one, exactly once."""
        type_filter = _type_filter(type)
        after = _event_cursor(last_event_id, "Last-Event-ID")
        params = caller_params(request)
        caller = await authorized(
            db, request, await request.app.state.queries.authorize_stream(db, **params, after=after)
        )
        if after is not None and caller["after_id"] is None:
            raise no_such("event", after, "Last-Event-ID")
        access_until = caller["access_until"]
        subscription = await event_stream.subscribe(
            request.app,
            caller_params=params,
            org_id=caller["caller_org_id"],
            environment=caller["environment"],
            credential_id=caller["caller_credential_id"],
            member_id=caller["member_id"],
            type_filter=type_filter,
            access_until=access_until.timestamp() if access_until else None,
            after=after,
            after_position=(caller["after_xact_id"], after) if after else None,
            follow=follow,
        )
        return Stream(
            subscription,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @get("/{event_id:str}", operation_id="getEvent", opt=READ)
    async def get_event(self, request: AppRequest, db: Db, event_id: EventId) -> Data[Event]:
        """Retrieve one event."""
        return await authorized_one(
            db, request, request.app.state.queries.get_event, event_from_row, "event", event_id
        )

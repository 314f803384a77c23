"""The gapless guarantee: a consumer that resumes from the last event it received (a
stream with Last-Event-ID, or GET /v1/events/feed with `after`) gets every event committed
after it, exactly once, however commits interleave across server processes.

Event ids are minted before commit, so an event with a smaller id can commit after a
larger one; ordering by id alone skips it (the negative twins run the old id-order query
next to the same checks and see it skip).
"""

import asyncio
import time
from collections import Counter

import httpx
from test_event_stream import SseReader, emit, stream

from conftest import bearer, wait_for
from ventryx_shared.ids import new_id

# The order streams used before the gapless feed: resume with id > last, by id.
OLD_ID_ORDER = """SELECT id FROM events WHERE org_id = $1 AND environment = 'live' AND id > $2
                  ORDER BY id LIMIT 100"""


def missing_and_duplicated(acknowledged: set[str], received: list[str]) -> tuple[set, set]:
    duplicated = {event_id for event_id, n in Counter(received).items() if n > 1}
    return acknowledged - set(received), duplicated


async def insert_in_open_transaction(db, org_id: str, event_id: str):
    """An emit that is slow to commit: its id was minted before the events that commit
    while it is open. Returns the connection and transaction to commit."""
    connection = await db.acquire()
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute(
        "INSERT INTO events (org_id, id, environment, type, payload, occurred_at, emitted_by) "
        "VALUES ($1, $2, 'live', 'order.slow', '{}', now(), 'test')",
        org_id,
        event_id,
    )
    return connection, transaction


async def feed_page(client, key: str, after: str | None, limit: int = 100) -> dict:
    params = {"limit": limit, **({"after": after} if after else {})}
    response = await client.get("/v1/events/feed", headers=bearer(key), params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def poll_feed(client, key: str, after: str | None) -> tuple[list[str], str | None]:
    """Everything the feed has after ``after`` now; and the cursor to continue from."""
    received = []
    while True:
        page = await feed_page(client, key, after)
        received += [event["id"] for event in page["data"]]
        after = received[-1] if received else after
        if not page["has_more"]:
            return received, after


async def test_an_event_that_commits_late_with_a_smaller_id_is_not_skipped(
    client, server, make_org, db
):
    org = await make_org("Late commit")
    first = await emit(client, org.admin_key)
    late_id = new_id("evt")  # minted first: the smaller id
    connection, transaction = await insert_in_open_transaction(db, org.id, late_id)
    try:
        early = await emit(client, org.admin_key)  # a larger id, committed first
        assert early["id"] > late_id
        # The old order hands out the larger id now, and its cursor is then past late_id.
        old_cursor = (await db.fetch(OLD_ID_ORDER, org.id, first["id"]))[-1]["id"]
        assert old_cursor == early["id"]
        # The feed holds it back while an older transaction is open.
        assert (await feed_page(client, org.admin_key, first["id"]))["data"] == []
    finally:
        await transaction.commit()
        await db.release(connection)
    new_order, _ = await poll_feed(client, org.admin_key, first["id"])
    assert new_order == [late_id, early["id"]]
    old_order = [row["id"] for row in await db.fetch(OLD_ID_ORDER, org.id, old_cursor)]
    assert missing_and_duplicated({late_id, early["id"]}, [early["id"], *old_order]) == (
        {late_id},
        set(),
    )
    # A stream resumed after the first event gets both, in the feed's order, then ends.
    async with stream(
        server.url,
        org.admin_key,
        params={"follow": "false"},
        headers={"Last-Event-ID": first["id"]},
    ) as response:
        reader = SseReader(response)
        assert [(await reader.next()).id for _ in range(2)] == new_order
        assert await reader.next() is None


async def test_a_live_stream_waits_for_the_late_commit_and_keeps_the_feed_order(
    client, server, second_server, make_org, db
):
    org = await make_org("Late commit live")
    async with stream(second_server.url, org.admin_key) as response:
        reader = SseReader(response)
        late_id = new_id("evt")
        connection, transaction = await insert_in_open_transaction(db, org.id, late_id)
        try:
            early = await emit(client, org.admin_key)
            await asyncio.sleep(0.5)  # the early event waits behind the open transaction
        finally:
            await transaction.commit()
            await db.release(connection)
        assert [(await reader.next()).id for _ in range(2)] == [late_id, early["id"]]


async def test_the_feed_refuses_cursors_it_cannot_continue_from(client, server, make_org):
    org = await make_org("Feed refusals")
    other = await make_org("Feed other")
    theirs = await emit(client, other.admin_key)
    for after, status in ((theirs["id"], 404), (new_id("evt"), 404), ("wf_01HXYZ", 400)):
        response = await client.get(
            "/v1/events/feed", headers=bearer(org.admin_key), params={"after": after}
        )
        assert response.status_code == status, response.text
        assert response.json()["error"]["param"] == "after"
    async with stream(
        server.url, org.admin_key, headers={"Last-Event-ID": theirs["id"]}
    ) as response:
        assert response.status_code == 404
        assert (await response.aread()) and response.headers["content-type"].startswith(
            "application/json"
        )
    assert (await feed_page(client, other.admin_key, None))["data"][0]["id"] == theirs["id"]


async def test_the_feed_needs_events_read_in_the_callers_environment(
    client, server, make_org, make_key
):
    org = await make_org("Feed scope")
    _, writer = await make_key(org, ["events:write"])
    _, test_reader = await make_key(org, ["events:read", "events:write"], "test")
    live = await emit(client, org.admin_key)
    response = await client.get("/v1/events/feed", headers=bearer(writer))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    mine = await emit(client, test_reader)
    assert [e["id"] for e in (await feed_page(client, test_reader, None))["data"]] == [mine["id"]]
    response = await client.get(
        "/v1/events/feed", headers=bearer(test_reader), params={"after": live["id"]}
    )
    assert response.status_code == 404


async def _emit_nonstop(
    base_url: str, key: str, stop: asyncio.Event, acknowledged: set[str], batch: bool
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while not stop.is_set():
            if batch:
                response = await http.post(
                    "/v1/events/batch",
                    headers=bearer(key),
                    json={"events": [{"type": "order.batch", "payload": {}}] * 5},
                )
                assert response.status_code == 201, response.text
                acknowledged.update(e["id"] for e in response.json()["data"])
            else:
                acknowledged.add((await emit(http, key, "order.single"))["id"])


async def _commit_slowly(
    db, org_id: str, stop: asyncio.Event, acknowledged: set[str], old_cursor: list[str]
) -> None:
    """Transactions that stay open while others commit (the inversions that lose events),
    until a reader in the old id order has gone past their id (or for at most a second)."""
    while not stop.is_set():
        event_id = new_id("evt")
        await asyncio.sleep(0.02)
        connection, transaction = await insert_in_open_transaction(db, org_id, event_id)

        async def passed(event_id: str = event_id) -> bool:
            return old_cursor[-1] > event_id

        await wait_for(passed, timeout=1, interval=0.01)
        await transaction.commit()
        await db.release(connection)
        acknowledged.add(event_id)


async def _reconnecting_stream(
    urls: list[str], key: str, done: asyncio.Event, received: list[str]
) -> None:
    """Drops its stream every 0.3 s and resumes on the other server with Last-Event-ID."""
    for attempt in range(10_000):
        if done.is_set():
            return
        headers = {"Last-Event-ID": received[-1]} if received else {}
        async with stream(urls[attempt % 2], key, headers=headers) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            until = time.monotonic() + 0.3
            while (left := until - time.monotonic()) > 0:
                try:
                    message = await reader.next(timeout=left)
                except TimeoutError:
                    break
                assert message is not None and message.event is None, message
                received.append(message.id)


async def _poll_nonstop(
    client, key: str, first: str, done: asyncio.Event, received: list[str]
) -> None:
    after = first
    while not done.is_set():
        page, after = await poll_feed(client, key, after)
        received += page
        await asyncio.sleep(0.01)


async def _poll_old_order(db, org_id: str, done: asyncio.Event, received: list[str]) -> None:
    """Starts after received[0], as the other consumers do."""
    while not done.is_set():
        rows = await db.fetch(OLD_ID_ORDER, org_id, received[-1])
        received += [row["id"] for row in rows]
        await asyncio.sleep(0.005)


async def test_concurrent_emitters_on_two_processes_lose_nothing_for_resuming_consumers(
    client, server, second_server, make_org, db
):
    org = await make_org("Soak")
    first = (await emit(client, org.admin_key))["id"]
    stop, done = asyncio.Event(), asyncio.Event()
    acknowledged: set[str] = set()
    streamed: list[str] = []
    polled: list[str] = []
    old_order: list[str] = [first]
    urls = [server.url, second_server.url]
    # The stream starts from `first` too, so that it owes exactly what the others owe.
    streamed.append(first)
    writers = [
        asyncio.create_task(
            _emit_nonstop(urls[i % 2], org.admin_key, stop, acknowledged, batch=i % 4 == 3)
        )
        for i in range(12)
    ]
    writers.append(asyncio.create_task(_commit_slowly(db, org.id, stop, acknowledged, old_order)))
    readers = [
        asyncio.create_task(_reconnecting_stream(urls, org.admin_key, done, streamed)),
        asyncio.create_task(_poll_nonstop(client, org.admin_key, first, done, polled)),
        asyncio.create_task(_poll_old_order(db, org.id, done, old_order)),
    ]

    async def enough_written() -> bool:
        return len(acknowledged) >= 300

    await wait_for(enough_written, timeout=4)
    stop.set()
    await asyncio.gather(*writers)

    async def all_arrived() -> bool:  # bounded: every acknowledged event, within moments
        return acknowledged <= set(streamed) and acknowledged <= set(polled)

    await wait_for(all_arrived, timeout=15, interval=0.1)
    await asyncio.sleep(0.3)  # a duplicate would arrive now
    done.set()
    await asyncio.gather(*readers)

    assert missing_and_duplicated(acknowledged, streamed[1:]) == (set(), set())
    assert missing_and_duplicated(acknowledged, polled) == (set(), set())
    assert streamed[1:] == polled  # one stable order, whoever reads it
    # The negative twin: the same checker, the old id order, the same run: it skips.
    old_missing, _ = missing_and_duplicated(acknowledged, old_order[1:])
    assert old_missing, "the old id-order query lost nothing: the test did not interleave"

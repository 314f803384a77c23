"""GET /v1/events/stream: server-sent events across server processes, via LISTEN/NOTIFY."""

import asyncio
import contextlib
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx

from conftest import (
    SQL_DIR,
    TEST_PEPPER,
    ServerProcess,
    bearer,
    create_scratch_database,
    drop_database,
    wait_for,
)
from ventryx_server import migrations
from ventryx_server.bootstrap import bootstrap
from ventryx_server.event_stream import LISTENER_APPLICATION_NAME, notification_payloads
from ventryx_shared.ids import new_id


@dataclass
class Message:
    id: str | None
    event: str | None
    data: dict


class SseReader:
    """Reads whole messages from a text/event-stream response, skipping comments."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 15) -> Message | None:
        """The next message, or None when the server ended the stream."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Message | None:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line == "":
                if "data" in fields:
                    return Message(
                        fields.get("id"), fields.get("event"), json.loads(fields["data"])
                    )
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        return None


@asynccontextmanager
async def stream(base_url: str, key: str, **kwargs):
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        async with http.stream(
            "GET",
            "/v1/events/stream",
            headers={**bearer(key), **kwargs.pop("headers", {})},
            **kwargs,
        ) as response:
            yield response


async def emit(client, key, event_type="order.created", payload=None):
    response = await client.post(
        "/v1/events", headers=bearer(key), json={"type": event_type, "payload": payload or {}}
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_a_stream_on_one_process_gets_events_emitted_through_another(
    client, server, second_server, org
):
    async with stream(second_server.url, org.admin_key) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        event = await emit(client, org.admin_key, "order.created", {"n": 1})
        message = await reader.next()
        assert message.id == event["id"]
        assert message.data == event
        batch = await client.post(
            "/v1/events/batch",
            headers=bearer(org.admin_key),
            json={"events": [{"type": "order.paid", "payload": {"i": i}} for i in range(500)]},
        )
        assert batch.status_code == 201
        received = [(await reader.next()).id for _ in range(500)]
        assert sorted(received) == sorted(e["id"] for e in batch.json()["data"])


async def test_reconnecting_with_last_event_id_replays_what_was_missed(
    client, server, second_server, make_org
):
    org = await make_org("Replay")
    first, missed_1, missed_2 = [
        await emit(client, org.admin_key, "order.created", {"i": i}) for i in range(3)
    ]
    async with stream(
        second_server.url, org.admin_key, headers={"Last-Event-ID": first["id"]}
    ) as response:
        reader = SseReader(response)
        assert [(await reader.next()).id for _ in range(2)] == [missed_1["id"], missed_2["id"]]
        live = await emit(client, org.admin_key)
        assert (await reader.next()).id == live["id"]


async def test_follow_false_replays_and_ends(client, server, make_org):
    org = await make_org("Catch up")
    first, second = [await emit(client, org.admin_key) for _ in range(2)]
    async with stream(
        server.url,
        org.admin_key,
        params={"follow": "false"},
        headers={"Last-Event-ID": first["id"]},
    ) as response:
        reader = SseReader(response)
        assert (await reader.next()).id == second["id"]
        assert await reader.next() is None


async def test_a_revoked_keys_stream_is_closed(client, server, second_server, org, make_key):
    key_id, key = await make_key(org, ["events:read"])
    async with stream(second_server.url, key) as response:
        assert response.status_code == 200
        reader = SseReader(response)
        revoked = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
        assert revoked.status_code == 200
        farewell = await reader.next()
        assert farewell.event == "error"
        assert farewell.data["error"]["type"] == "authentication_error"
        assert await reader.next() is None
    async with stream(second_server.url, key) as again:
        assert again.status_code == 401


async def test_a_stream_carries_only_its_organization_and_environment(
    client, server, make_org, make_key
):
    org = await make_org("Stream scope")
    other = await make_org("Stream other")
    _, test_key = await make_key(org, ["events:read", "events:write"], "test")
    async with stream(server.url, test_key) as response:
        reader = SseReader(response)
        await emit(client, org.admin_key, "live.only")
        await emit(client, other.admin_key, "other.org")
        mine = await emit(client, test_key, "test.mine")
        message = await reader.next()
        assert (message.id, message.data["environment"]) == (mine["id"], "test")


async def test_a_type_filter_keeps_only_matching_events(client, server, make_org):
    org = await make_org("Stream filter")
    async with stream(server.url, org.admin_key, params={"type": "order.*"}) as response:
        reader = SseReader(response)
        await emit(client, org.admin_key, "user.signed_up")
        await emit(client, org.admin_key, "orderly.thing")
        wanted = await emit(client, org.admin_key, "order.refund.issued")
        assert (await reader.next()).id == wanted["id"]


async def test_stream_refusals(client, server, org, make_key):
    _, writer = await make_key(org, ["events:write"])
    async with stream(server.url, writer) as response:
        assert response.status_code == 403
        body = json.loads(await response.aread())
        assert "events:read" in body["error"]["message"]
    for headers, params in (
        ({"Last-Event-ID": "wf_01HXYZ"}, {}),
        ({}, {"type": "Bad"}),
        ({"Last-Event-ID": "evt_' OR 1=1"}, {}),
    ):
        async with stream(server.url, org.admin_key, headers=headers, params=params) as response:
            assert response.status_code == 400
            error = json.loads(await response.aread())["error"]
            assert error["param"] == ("Last-Event-ID" if headers else "type")
    async with stream(server.url, "vtx_live_notarealkey") as response:
        assert response.status_code == 401


def test_announcements_name_each_organization_and_environment_once():
    org_a, org_b = new_id("org"), new_id("org")
    payloads = notification_payloads({(org_a, "live"), (org_b, "test"), (org_a, "test")})
    assert sorted(payloads) == sorted([f"{org_a} live", f"{org_b} test", f"{org_a} test"])


async def test_a_busy_stream_ends_when_a_recheck_finds_its_key_expired(
    client, database_url, server_log_dir, make_org, make_key, db
):
    # Expiry sends no notification; the periodic re-check (here every 0.3 s) finds it,
    # also while events keep the stream from ever being idle.
    quick = ServerProcess(
        database_url,
        server_log_dir / "server-quick-recheck.log",
        {"VENTRYX_STREAM_HEARTBEAT_SECONDS": "0.3"},
    )
    try:
        await asyncio.to_thread(quick.wait_ready)
        org = await make_org("Expiring")
        key_id, key = await make_key(org, ["events:read"])
        async with stream(quick.url, key) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            await db.execute(
                "UPDATE api_keys SET expires_at = now() WHERE org_id = $1 AND id = $2",
                org.id,
                key_id,
            )

            async def keep_emitting():
                while True:
                    await emit(client, org.admin_key, "keep.busy")
                    await asyncio.sleep(0.05)

            emitter = asyncio.create_task(keep_emitting())
            try:
                farewell = await reader.next()
                while farewell.event != "error":
                    farewell = await reader.next()
            finally:
                emitter.cancel()
            assert farewell.event == "error"
            assert farewell.data["error"]["type"] == "authentication_error"
            assert await reader.next() is None
    finally:
        await asyncio.to_thread(quick.stop)


async def test_a_replay_longer_than_a_page_sends_every_missed_event(client, server, make_org):
    org = await make_org("Long replay")
    first = await emit(client, org.admin_key)
    missed = []
    for _ in range(2):
        batch = await client.post(
            "/v1/events/batch",
            headers=bearer(org.admin_key),
            json={"events": [{"type": "bulk.loaded"}] * 400},
        )
        missed += [e["id"] for e in batch.json()["data"]]
    async with stream(
        server.url,
        org.admin_key,
        params={"follow": "false"},
        headers={"Last-Event-ID": first["id"]},
    ) as response:
        reader = SseReader(response)
        replayed = []
        while (message := await reader.next()) is not None:
            replayed.append(message.id)
    assert replayed == sorted(missed)


async def test_losing_the_listener_ends_streams_and_a_reconnect_resumes(
    client, server, make_org, db
):
    org = await make_org("Listener lost")
    async with stream(server.url, org.admin_key) as response:
        reader = SseReader(response)
        before = await emit(client, org.admin_key)
        assert (await reader.next()).id == before["id"]
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_APPLICATION_NAME,
        )
        farewell = await reader.next()
        assert (farewell.event, farewell.data["error"]["code"]) == ("error", "stream_interrupted")
        assert await reader.next() is None
    missed = await emit(client, org.admin_key)
    async with stream(
        server.url, org.admin_key, headers={"Last-Event-ID": before["id"]}
    ) as response:
        reader = SseReader(response)
        assert (await reader.next()).id == missed["id"]
        live = await emit(client, org.admin_key)
        assert (await reader.next()).id == live["id"]


async def test_streams_and_announcements_recover_after_the_database_drops_every_connection(
    admin_url, server_log_dir, queries, ledger
):
    # A database of its own: every backend of it is terminated, the suite's included.
    url = await create_scratch_database(admin_url, "vtx_outage")
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(drop_database, admin_url, url)
        conn = await asyncpg.connect(url)
        cleanup.push_async_callback(conn.close)
        await migrations.migrate(conn, SQL_DIR)
        made = await bootstrap(
            conn, queries, TEST_PEPPER, org_name="Outage", owner_email="owner@example.com"
        )
        key = ledger.add(made.key)
        log_path = server_log_dir / "server-outage.log"
        process = ServerProcess(url, log_path)
        cleanup.callback(process.stop)
        await asyncio.to_thread(process.wait_ready)
        async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
            async with stream(process.url, key) as response:
                reader = SseReader(response)
                before = await emit(http, key)
                assert (await reader.next()).id == before["id"]

                async def emit_regardless():
                    while True:
                        await http.post(
                            "/v1/events",
                            headers=bearer(key),
                            json={"type": "order.created", "payload": {}},
                        )

                emitters = [asyncio.create_task(emit_regardless()) for _ in range(4)]
                for _ in range(5):
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                    await asyncio.sleep(0.2)
                for emitter in emitters:
                    emitter.cancel()
                await asyncio.gather(*emitters, return_exceptions=True)
                farewell = await reader.next()
                assert farewell.data["error"]["code"] == "stream_interrupted"

            async def emits_again() -> bool:
                response = await http.post(
                    "/v1/events", headers=bearer(key), json={"type": "order.after", "payload": {}}
                )
                return response.status_code == 201

            assert await wait_for(emits_again, timeout=10, interval=0.2)
            async with stream(
                process.url, key, headers={"Last-Event-ID": before["id"]}
            ) as response:
                reader = SseReader(response)
                while (await reader.next()).data["type"] != "order.after":
                    pass  # what was emitted during the outage comes first
                live = await emit(http, key, "order.live")
                # An emit the client gave up on during the outage may still have been
                # running in the server and commit after order.after: it comes first.
                while (event := await reader.next()).data["type"] == "order.created":
                    pass
                assert event.id == live["id"]
        assert "never retrieved" not in log_path.read_text()

"""A stream ends within a second of any loss of access, on whichever process holds it,
with a final `event: error` naming why; no event committed after the loss reaches it.
Changes that keep access keep the stream."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers import login, member_session
from test_event_stream import SseReader, emit, stream

from conftest import bearer

pytestmark = pytest.mark.usefixtures("forget_local_login_failures")

LOSS_SECONDS = 1.0


async def farewell_of(reader: SseReader, timeout: float = 5) -> tuple[str, list[str]]:
    """Reads until the stream's farewell: (its code, the ids of events before it)."""
    received = []
    while True:
        message = await reader.next(timeout=timeout)
        assert message is not None, "the stream ended without a farewell"
        if message.event == "error":
            assert await reader.next(timeout=timeout) is None
            return message.data["error"]["code"], received
        received.append(message.id)


async def still_open(reader: SseReader, client, admin_key: str) -> bool:
    event = await emit(client, admin_key, "still.open")
    message = await reader.next(timeout=5)
    return message is not None and message.id == event["id"]


async def _revoke(client, org, key_id):
    return await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))


async def _rotate_now(client, org, key_id):
    return await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 0},
    )


async def _remove_read_scope(client, org, key_id):
    return await client.patch(
        f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key), json={"scopes": ["events:write"]}
    )


@pytest.mark.parametrize(
    ("take_access", "code"),
    [
        (_revoke, "key_revoked"),
        (_rotate_now, "key_expired"),
        (_remove_read_scope, "missing_scope"),
    ],
    ids=["revoked", "rotated-without-grace", "events-read-removed"],
)
async def test_a_keys_stream_ends_within_a_second_of_losing_access(
    take_access, code, client, server, second_server, org, make_key
):
    key_id, key = await make_key(org, ["events:read", "events:write"])
    async with stream(second_server.url, key) as response:
        reader = SseReader(response)
        assert await still_open(reader, client, org.admin_key)
        changed = await take_access(client, org, key_id)
        assert changed.status_code in (200, 201), changed.text
        started = time.monotonic()
        assert (await farewell_of(reader))[0] == code
        assert time.monotonic() - started < LOSS_SECONDS


async def test_a_keys_stream_ends_within_a_second_of_its_expiry(client, server, org, make_key):
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    _, key = await make_key(org, ["events:read"], expires_at=expires_at.isoformat())
    async with stream(server.url, key) as response:
        reader = SseReader(response)
        assert (await farewell_of(reader))[0] == "key_expired"
        assert datetime.now(UTC) - expires_at < timedelta(seconds=LOSS_SECONDS)


async def test_the_old_keys_stream_ends_within_a_second_of_the_end_of_a_rotations_grace(
    client, server, org, make_key
):
    key_id, key = await make_key(org, ["events:read"])
    async with stream(server.url, key) as response:
        reader = SseReader(response)
        assert await still_open(reader, client, org.admin_key)
        rotated = await client.post(
            f"/v1/api-keys/{key_id}/rotate",
            headers=bearer(org.admin_key),
            json={"grace_period_seconds": 2},
        )
        assert rotated.status_code == 201
        grace_ends = time.monotonic() + 2
        assert (await farewell_of(reader, timeout=10))[0] == "key_expired"
        assert -0.5 < time.monotonic() - grace_ends < LOSS_SECONDS


async def _logout(client, org, member, token):
    return await client.delete("/v1/sessions/current", headers=bearer(token))


async def _remove_member(client, org, member, token):
    return await client.delete(f"/v1/members/{member['id']}", headers=bearer(org.admin_key))


@pytest.mark.parametrize(
    ("end_access", "code"),
    [
        (_logout, "session_ended"),
        (_remove_member, "member_removed"),
    ],
    ids=["logout", "member-removed"],
)
async def test_a_sessions_stream_ends_within_a_second_of_losing_access(
    end_access, code, client, server, second_server, ledger, org
):
    member, token, _ = await member_session(client, ledger, org, "developer")
    async with stream(second_server.url, token) as response:
        reader = SseReader(response)
        assert await still_open(reader, client, org.admin_key)
        changed = await end_access(client, org, member, token)
        assert changed.status_code in (200, 204), changed.text
        started = time.monotonic()
        assert (await farewell_of(reader))[0] == code
        assert time.monotonic() - started < LOSS_SECONDS


async def test_a_password_change_ends_the_streams_of_the_members_other_sessions(
    client, server, second_server, ledger, org
):
    member, token, password = await member_session(client, ledger, org, "viewer")
    other = await login(client, member["email"], password)
    other_token = ledger.add(other.json()["data"]["token"])
    async with stream(second_server.url, other_token) as response:
        reader = SseReader(response)
        changed = await client.post(
            "/v1/members/me/password",
            headers=bearer(token),
            json={"current_password": password, "new_password": ledger.add("n3w-" + password)},
        )
        assert changed.status_code == 200
        started = time.monotonic()
        assert (await farewell_of(reader))[0] == "session_ended"
        assert time.monotonic() - started < LOSS_SECONDS


async def test_changes_that_keep_access_keep_the_stream(
    client, server, second_server, ledger, org, make_key
):
    key_id, key = await make_key(org, ["events:read", "events:write"])
    other_id, _ = await make_key(org, ["events:read"])
    member, token, _ = await member_session(client, ledger, org, "admin")
    async with (
        stream(second_server.url, key) as by_key,
        stream(second_server.url, token) as by_session,
    ):
        readers = [SseReader(by_key), SseReader(by_session)]
        for change in (
            client.post(
                f"/v1/api-keys/{key_id}/rotate",
                headers=bearer(org.admin_key),
                json={"grace_period_seconds": 3600},
            ),
            client.patch(
                f"/v1/api-keys/{key_id}",
                headers=bearer(org.admin_key),
                json={"scopes": ["events:read"]},
            ),
            client.delete(f"/v1/api-keys/{other_id}", headers=bearer(org.admin_key)),
            client.patch(
                f"/v1/members/{member['id']}",
                headers=bearer(org.admin_key),
                json={"role": "viewer"},
            ),
        ):
            assert (await change).status_code in (200, 201)
            await asyncio.sleep(0.3)  # a wrongful farewell would come now
            event = await emit(client, org.admin_key, "still.open")
            for reader in readers:
                assert (await reader.next(timeout=5)).id == event["id"]


async def test_no_event_committed_after_the_loss_reaches_the_stream(
    client, server, second_server, org, make_key, db
):
    key_id, key = await make_key(org, ["events:read"])
    async with stream(second_server.url, key) as response:
        reader = SseReader(response)
        assert await still_open(reader, client, org.admin_key)
        # The loss's notification is withheld (no triggers for this update): only the check
        # made in the snapshot that fetches the next event stands between it and the stream.
        async with db.acquire() as connection, connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute(
                "UPDATE api_keys SET scopes = '{events:write}' WHERE org_id = $1 AND id = $2",
                org.id,
                key_id,
            )
        await emit(client, org.admin_key, "order.created")
        assert await farewell_of(reader) == ("missing_scope", [])

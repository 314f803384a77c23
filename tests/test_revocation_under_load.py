"""Loss of access holds while the credential is being hammered, as an attacker with a
leaked key would: writers emit nonstop (single, idempotent, batches of 10) through two
server processes, then access is taken away. The taking returns while the writes go on;
every write that started after it returned is refused; nothing the credential wrote was
created after the moment access ended; every 201 is an event in the database and every
refusal left nothing. The full 64-writer, 20-trial measurement is bench/revocation.py."""

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field

import httpx
from helpers import login, member_session

from conftest import bearer, wait_for

WRITERS = 16
BATCH = 10
# A safety stop for the writers, far beyond what any revocation takes; the old one waited
# for as long as writes kept coming.
WRITING_AT_MOST_SECONDS = 20


@dataclass
class Write:
    sent: float
    answered: float
    status: int
    events: int


@dataclass
class Writers:
    """WRITERS concurrent clients spread over the given servers, each cycling through a
    single emit, an emit with a fresh Idempotency-Key and a batch, until stopped."""

    urls: list[str]
    headers: dict[str, str]
    writes: list[Write] = field(default_factory=list)
    stopped_by_safety: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _write(self, http: httpx.AsyncClient, kind: int) -> None:
        sent = time.monotonic()
        if kind == 0:
            response = await http.post("/v1/events", json={"type": "load.single", "payload": {}})
            events = 1
        elif kind == 1:
            response = await http.post(
                "/v1/events",
                json={"type": "load.keyed", "payload": {}},
                headers={"Idempotency-Key": secrets.token_hex(8)},
            )
            events = 1
        else:
            response = await http.post(
                "/v1/events/batch",
                json={
                    "events": [{"type": "load.batch", "payload": {"n": n}} for n in range(BATCH)]
                },
            )
            events = BATCH
        self.writes.append(Write(sent, time.monotonic(), response.status_code, events))

    async def _writer(self, number: int) -> None:
        async with httpx.AsyncClient(
            base_url=self.urls[number % len(self.urls)], headers=self.headers, timeout=30
        ) as http:
            for kind in itertools.cycle(range(3)):
                if self._stop.is_set():
                    return
                await self._write(http, (kind + number) % 3)

    async def run_until(self, taking_away) -> tuple[float, float, httpx.Response]:
        """Writes a while, awaits ``taking_away()`` while the writes go on, goes on until
        every writer has written again, stops: (when it was sent, when it returned, its
        response)."""
        tasks = [asyncio.create_task(self._writer(n)) for n in range(WRITERS)]
        safety = asyncio.get_running_loop().call_later(WRITING_AT_MOST_SECONDS, self._safety)
        try:
            await wait_for(self._warmed_up, timeout=10)
            started = time.monotonic()
            response = await taking_away()
            returned = time.monotonic()
            await wait_for(lambda: self._sent_since(returned), timeout=10)
        finally:
            safety.cancel()
            self._stop.set()
            await asyncio.gather(*tasks)
        return started, returned, response

    async def _sent_since(self, moment: float) -> bool:
        return sum(w.sent > moment for w in self.writes) >= WRITERS

    async def _warmed_up(self) -> bool:
        return sum(w.status == 201 for w in self.writes) >= 2 * WRITERS

    def _safety(self) -> None:
        self.stopped_by_safety = True
        self._stop.set()


async def _events_by(db, org_id: str, emitted_by: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM events WHERE org_id = $1 AND emitted_by = $2", org_id, emitted_by
    )


async def check_loss_of_access(
    writers: Writers, taking_away, db, org_id: str, emitted_by: str, refusal: int = 401
) -> None:
    """Runs the writers around ``taking_away`` and checks what must hold."""
    started, returned, response = await writers.run_until(taking_away)
    assert response.status_code in (200, 201, 202), response.text
    assert not writers.stopped_by_safety, "taking access away waited for the writers to stop"
    statuses = {w.status for w in writers.writes}
    assert statuses <= {201, refusal}, statuses  # never a 5xx, a 409 or a hang
    before = [w for w in writers.writes if w.answered < started]
    after = [w for w in writers.writes if w.sent > returned]
    assert before and all(w.status == 201 for w in before)
    assert after and all(w.status == refusal for w in after)
    accepted = sum(w.events for w in writers.writes if w.status == 201)
    # Every 201 is in the database, every refusal (in flight or later) left nothing.
    assert await _events_by(db, org_id, emitted_by) == accepted


async def _key_under_load(client, second_server, org, make_key):
    key_id, key = await make_key(org, ["events:write", "events:read"], name="hammered")
    return key_id, key, Writers([client.base_url, second_server.url], bearer(key))


async def _none_created_after(db, org_id: str, emitted_by: str, moment_sql: str) -> None:
    later = await db.fetchval(
        f"SELECT count(*) FROM events e WHERE e.org_id = $1 AND e.emitted_by = $2 "
        f"AND e.created_at > ({moment_sql})",
        org_id,
        emitted_by,
    )
    assert later == 0


async def test_delete_under_load_returns_and_no_write_commits_after_it(
    client, second_server, org, make_key, db
):
    key_id, key, writers = await _key_under_load(client, second_server, org, make_key)
    await check_loss_of_access(
        writers,
        lambda: client.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key)),
        db,
        org.id,
        key_id,
    )
    await _none_created_after(
        db, org.id, key_id, f"SELECT revoked_at FROM api_keys WHERE id = '{key_id}'"
    )


async def test_revoke_leaked_under_load(client, second_server, org, make_key, db):
    key_id, key, writers = await _key_under_load(client, second_server, org, make_key)
    await check_loss_of_access(
        writers,
        lambda: client.post("/v1/api-keys/revoke-leaked", json={"key": key}),
        db,
        org.id,
        key_id,
    )
    await _none_created_after(
        db, org.id, key_id, f"SELECT revoked_at FROM api_keys WHERE id = '{key_id}'"
    )


async def test_rotation_with_no_grace_under_load(client, second_server, org, make_key, db):
    key_id, key, writers = await _key_under_load(client, second_server, org, make_key)
    await check_loss_of_access(
        writers,
        lambda: client.post(
            f"/v1/api-keys/{key_id}/rotate",
            headers=bearer(org.admin_key),
            json={"grace_period_seconds": 0},
        ),
        db,
        org.id,
        key_id,
    )
    await _none_created_after(
        db, org.id, key_id, f"SELECT expires_at FROM api_keys WHERE id = '{key_id}'"
    )


async def test_end_of_a_rotations_grace_under_load(client, second_server, org, make_key, db):
    """No request ends the access here: the clock does, at expires_at."""
    key_id, key, writers = await _key_under_load(client, second_server, org, make_key)

    async def grace_runs_out():
        rotated = await client.post(
            f"/v1/api-keys/{key_id}/rotate",
            headers=bearer(org.admin_key),
            json={"grace_period_seconds": 1},
        )

        async def grace_over() -> bool:
            return await db.fetchval(
                "SELECT expires_at <= now() FROM api_keys WHERE org_id = $1 AND id = $2",
                org.id,
                key_id,
            )

        assert await wait_for(grace_over)
        return rotated

    await check_loss_of_access(writers, grace_runs_out, db, org.id, key_id)
    await _none_created_after(
        db, org.id, key_id, f"SELECT expires_at FROM api_keys WHERE id = '{key_id}'"
    )


async def test_removing_a_scope_under_load(client, second_server, org, make_key, db):
    key_id, key, writers = await _key_under_load(client, second_server, org, make_key)
    await check_loss_of_access(
        writers,
        lambda: client.patch(
            f"/v1/api-keys/{key_id}",
            headers=bearer(org.admin_key),
            json={"scopes": ["events:read"]},
        ),
        db,
        org.id,
        key_id,
        refusal=403,
    )


async def test_a_key_kept_under_load_goes_on_writing(client, second_server, org, make_key, db):
    """The negative twin: the same load while another key is revoked loses nothing."""
    key_id, key, writers = await _key_under_load(client, second_server, org, make_key)
    other_id, _ = await make_key(org, ["events:write"], name="someone else")
    started, returned, response = await writers.run_until(
        lambda: client.delete(f"/v1/api-keys/{other_id}", headers=bearer(org.admin_key))
    )
    assert response.status_code == 200
    assert {w.status for w in writers.writes} == {201}
    assert any(w.sent > returned for w in writers.writes)
    assert await _events_by(db, org.id, key_id) == sum(w.events for w in writers.writes)


async def _developer_under_load(client, second_server, ledger, org):
    member, token, password = await member_session(client, ledger, org, "developer")
    return member, token, password, Writers([client.base_url, second_server.url], bearer(token))


async def test_logout_under_load(client, second_server, ledger, org, db):
    member, token, _, writers = await _developer_under_load(client, second_server, ledger, org)
    await check_loss_of_access(
        writers,
        lambda: client.delete("/v1/sessions/current", headers=bearer(token)),
        db,
        org.id,
        member["id"],
    )
    await _none_created_after(
        db,
        org.id,
        member["id"],
        f"SELECT max(ended_at) FROM sessions WHERE member_id = '{member['id']}'",
    )


async def test_a_password_change_ends_the_other_session_under_load(
    client, second_server, ledger, org, db
):
    member, token, password, writers = await _developer_under_load(
        client, second_server, ledger, org
    )
    second = await login(client, member["email"], password)
    assert second.status_code == 201
    other_token = ledger.add(second.json()["data"]["token"])
    new_password = ledger.add(secrets.token_urlsafe(24))
    await check_loss_of_access(
        writers,
        lambda: client.post(
            "/v1/members/me/password",
            headers=bearer(other_token),
            json={"current_password": password, "new_password": new_password},
        ),
        db,
        org.id,
        member["id"],
    )


async def test_removing_a_member_under_load(client, second_server, ledger, org, db):
    member, token, _, writers = await _developer_under_load(client, second_server, ledger, org)
    await check_loss_of_access(
        writers,
        lambda: client.delete(f"/v1/members/{member['id']}", headers=bearer(org.admin_key)),
        db,
        org.id,
        member["id"],
    )


async def test_demoting_a_member_under_load(client, second_server, ledger, org, db):
    member, token, _, writers = await _developer_under_load(client, second_server, ledger, org)
    await check_loss_of_access(
        writers,
        lambda: client.patch(
            f"/v1/members/{member['id']}", headers=bearer(org.admin_key), json={"role": "viewer"}
        ),
        db,
        org.id,
        member["id"],
        refusal=403,
    )

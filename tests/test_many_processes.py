"""Three server processes on one PostgreSQL agree, as behind a load balancer: a stream on
one gets what another wrote, a revocation through one holds on all at once, usage is
recorded whichever served, and a rate limit is shared (within one sync interval). All of
it twice: connected to PostgreSQL directly, and through a real PgBouncer in transaction
pooling mode (the streams' LISTEN then on its direct connection)."""

import asyncio

import httpx
import pytest
from test_event_stream import SseReader, emit, stream

from conftest import ServerProcess, bearer, wait_for

SYNC_SECONDS = 0.2
LIMIT = 30


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
def three_servers(request, database_url, server_log_dir):
    pooler = request.getfixturevalue("pgbouncer") if request.param == "pgbouncer" else None
    processes = [
        ServerProcess(
            database_url,
            server_log_dir / f"server-many-{request.param}-{n}.log",
            {"VENTRYX_RATE_LIMIT_SYNC_SECONDS": str(SYNC_SECONDS)},
            pooler,
        )
        for n in range(3)
    ]
    try:
        for process in processes:
            process.wait_ready(timeout=120)  # three start at once on a shared machine
        yield processes
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
async def clients(three_servers):
    async with (
        httpx.AsyncClient(base_url=three_servers[0].url, timeout=15) as a,
        httpx.AsyncClient(base_url=three_servers[1].url, timeout=15) as b,
        httpx.AsyncClient(base_url=three_servers[2].url, timeout=15) as c,
    ):
        yield a, b, c


async def test_streams_on_every_process_get_what_any_process_wrote(
    three_servers, clients, make_org
):
    org = await make_org()
    async with (
        stream(three_servers[1].url, org.admin_key) as on_b,
        stream(three_servers[2].url, org.admin_key) as on_c,
    ):
        readers = [SseReader(on_b), SseReader(on_c)]
        written = [
            await emit(client, org.admin_key, payload={"via": n})
            for n, client in enumerate(clients)
        ]
        for reader in readers:
            received = [(await reader.next()).id for _ in written]
            assert received == [event["id"] for event in written]


async def test_a_revocation_through_one_process_holds_on_all_at_once(clients, make_org, make_key):
    org = await make_org()
    a, b, c = clients
    key_id, key = await make_key(org, ["workflows:read"])
    assert {
        (await client.get("/v1/workflows", headers=bearer(key))).status_code for client in clients
    } == {200}
    assert (
        await a.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    ).status_code == 200
    assert [
        (await client.get("/v1/workflows", headers=bearer(key))).status_code for client in (b, c, a)
    ] == [401, 401, 401]
    # The twin: another key of the organization keeps working everywhere.
    _, other = await make_key(org, ["workflows:read"])
    assert {
        (await client.get("/v1/workflows", headers=bearer(other))).status_code for client in clients
    } == {200}


async def test_usage_is_recorded_whichever_process_served(clients, make_org, make_key, db):
    org = await make_org()
    key_id, key = await make_key(org, ["workflows:read"])
    assert (await clients[2].get("/v1/workflows", headers=bearer(key))).status_code == 200

    async def recorded():
        return await db.fetchval(
            "SELECT last_used_at FROM api_keys WHERE org_id = $1 AND id = $2", org.id, key_id
        )

    assert await wait_for(recorded, timeout=5)


async def test_a_rate_limit_is_shared_by_the_processes(clients, make_org, make_key):
    org = await make_org()
    _, key = await make_key(
        org, ["workflows:read"], rate_limit={"requests": LIMIT, "window_seconds": 86400}
    )

    async def hammer(client):
        statuses = []
        for _ in range(LIMIT):
            statuses.append((await client.get("/v1/workflows", headers=bearer(key))).status_code)
            await asyncio.sleep(SYNC_SECONDS / 4)
        return statuses

    statuses = [s for result in await asyncio.gather(*map(hammer, clients)) for s in result]
    admitted = statuses.count(200)
    # Alone, each process would admit LIMIT (90 in all). Shared, the three admit LIMIT
    # plus what they let through in one sync interval before learning the total.
    assert LIMIT <= admitted < 2 * LIMIT, admitted
    assert statuses.count(429) == len(statuses) - admitted
    # Every process now refuses the key.
    assert {
        (await client.get("/v1/workflows", headers=bearer(key))).status_code for client in clients
    } == {429}

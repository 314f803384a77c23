"""Per-credential rate limits across server processes, and per-address limits.

Two real server processes share the suite's database, sync their counts every 0.2 s,
trust 127.0.0.1 as a proxy (so each test picks its own client address with
X-Forwarded-For) and have low per-address limits; a third trusts no proxy.
"""

import asyncio
import re
import secrets

import httpx
import pytest

from conftest import ServerProcess, bearer, wait_for
from ventryx_shared.tokens import generate_api_key, generate_session_token

SYNC_SECONDS = 0.2
LIMITS_ENV = {
    "VENTRYX_RATE_LIMIT_SYNC_SECONDS": str(SYNC_SECONDS),
    "VENTRYX_LOGIN_LIMIT_PER_ADDRESS": "3/60",
    "VENTRYX_LEAK_REPORT_LIMIT_PER_ADDRESS": "3/60",
    "VENTRYX_FAILED_AUTH_LIMIT_PER_ADDRESS": "5/60",
}
DAY = 86_400
RATE_LIMIT = re.compile(r'^"default";r=(\d+);t=(\d+)$')


def _start(database_url, log_path, env) -> ServerProcess:
    process = ServerProcess(database_url, log_path, env)
    try:
        process.wait_ready()
    except BaseException:
        process.stop()
        raise
    return process


@pytest.fixture(scope="module")
def limited(database_url, server_log_dir):
    """Two processes behind a trusted proxy (127.0.0.1), as behind a load balancer."""
    env = {**LIMITS_ENV, "VENTRYX_TRUSTED_PROXIES": "127.0.0.1/32, ::1"}
    first = _start(database_url, server_log_dir / "limits-a.log", env)
    try:
        second = _start(database_url, server_log_dir / "limits-b.log", env)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def untrusting(database_url, server_log_dir):
    """A process that trusts no proxy: X-Forwarded-For means nothing to it."""
    process = _start(database_url, server_log_dir / "limits-untrusting.log", LIMITS_ENV)
    yield process
    process.stop()


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def from_address(address: str, token: str | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": address, **(bearer(token) if token else {})}


def new_address() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def remaining_and_reset(response: httpx.Response) -> tuple[int, int]:
    match = RATE_LIMIT.match(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return int(match[1]), int(match[2])


async def _workflow_count(db, org_id: str) -> int:
    async with db.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM workflows WHERE org_id = $1", org_id)


async def test_a_key_gets_its_limit_then_429_with_the_headers_and_no_work_done(
    http, limited, db, org, make_key
):
    server, _ = limited
    _, key = await make_key(
        org,
        ["workflows:read", "workflows:write"],
        rate_limit={"requests": 5, "window_seconds": DAY},
    )
    seen = []
    for _ in range(5):
        response = await http.get(f"{server.url}/v1/workflows", headers=bearer(key))
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-policy"] == f'"default";q=5;w={DAY}'
        seen.append(remaining_and_reset(response))
    assert [remaining for remaining, _ in seen] == [4, 3, 2, 1, 0]
    assert all(0 < reset <= DAY for _, reset in seen)
    before = await _workflow_count(db, org.id)
    refused = await http.post(
        f"{server.url}/v1/workflows",
        headers=bearer(key),
        json={"name": "over the limit", "trigger": "order.created", "steps": []},
    )
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error["request_id"] == refused.headers["request-id"]
    remaining, reset = remaining_and_reset(refused)
    assert remaining == 0 and int(refused.headers["retry-after"]) == reset
    assert refused.headers["ratelimit-policy"] == f'"default";q=5;w={DAY}'
    assert await _workflow_count(db, org.id) == before


async def test_every_authenticated_response_carries_the_headers_errors_too(
    http, limited, org, make_key
):
    server, _ = limited
    _, key = await make_key(org, ["workflows:read"])
    missing = await http.get(
        f"{server.url}/v1/workflows/wf_01HXYZ00000000000000000000", headers=bearer(key)
    )
    forbidden = await http.get(f"{server.url}/v1/events", headers=bearer(key))
    assert (missing.status_code, forbidden.status_code) == (404, 403)
    for response in (missing, forbidden):
        assert response.headers["ratelimit-policy"] == '"default";q=6000;w=60'
        assert remaining_and_reset(response)[0] < 6000


async def test_the_window_resets(http, limited, org, make_key):
    server, _ = limited
    _, key = await make_key(
        org, ["workflows:read"], rate_limit={"requests": 2, "window_seconds": 2}
    )
    statuses = [
        (await http.get(f"{server.url}/v1/workflows", headers=bearer(key))).status_code
        for _ in range(2)
    ]
    refused = await http.get(f"{server.url}/v1/workflows", headers=bearer(key))
    if refused.status_code == 200:  # the 2 s window happened to turn between requests
        refused = await http.get(f"{server.url}/v1/workflows", headers=bearer(key))
    assert statuses == [200, 200] and refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 2
    await asyncio.sleep(retry_after + 0.05)
    again = await http.get(f"{server.url}/v1/workflows", headers=bearer(key))
    assert again.status_code == 200
    assert remaining_and_reset(again)[0] == 1


async def test_one_keys_flood_never_limits_another_key(http, limited, org, make_org, make_key):
    server, _ = limited
    _, flooded = await make_key(
        org, ["workflows:read"], rate_limit={"requests": 3, "window_seconds": DAY}
    )
    _, neighbour = await make_key(
        org, ["workflows:read"], rate_limit={"requests": 3, "window_seconds": DAY}
    )
    other = await make_org("Elsewhere")
    flood = await asyncio.gather(
        *[http.get(f"{server.url}/v1/workflows", headers=bearer(flooded)) for _ in range(20)]
    )
    assert sorted(r.status_code for r in flood) == [200] * 3 + [429] * 17
    for key in (neighbour, other.admin_key):
        response = await http.get(f"{server.url}/v1/workflows", headers=bearer(key))
        assert response.status_code == 200
        assert remaining_and_reset(response)[0] >= 2


async def test_keys_without_their_own_limit_follow_the_organizations_default(
    http, client, limited, org, make_key
):
    server, second = limited
    key_id, key = await make_key(org, ["workflows:read"])
    listed = await client.get(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    assert listed.json()["data"]["rate_limit"] is None
    changed = await client.patch(
        "/v1/org",
        headers=bearer(org.admin_key),
        json={"default_rate_limit": {"requests": 4, "window_seconds": DAY}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["default_rate_limit"] == {"requests": 4, "window_seconds": DAY}
    response = await http.get(f"{server.url}/v1/workflows", headers=bearer(key))
    assert response.headers["ratelimit-policy"] == f'"default";q=4;w={DAY}'
    # The key's own limit wins, on every process within a sync interval.
    own = await client.patch(
        f"/v1/api-keys/{key_id}",
        headers=bearer(org.admin_key),
        json={"rate_limit": {"requests": 50, "window_seconds": 60}},
    )
    assert own.status_code == 200 and own.json()["data"]["rate_limit"] == {
        "requests": 50,
        "window_seconds": 60,
    }
    for process in (server, second):
        assert await _policy_becomes(http, process, key, '"default";q=50;w=60')
    # null: back to the organization's default.
    reset = await client.patch(
        f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key), json={"rate_limit": None}
    )
    assert reset.json()["data"]["rate_limit"] is None
    assert await _policy_becomes(http, server, key, f'"default";q=4;w={DAY}')


async def _policy_becomes(http, process, key: str, expected: str) -> bool:
    """Whether the process shows ``expected`` within a few sync intervals (a loaded
    machine may delay a sync; a request on the way is answered with the old policy)."""

    async def shown() -> bool:
        response = await http.get(f"{process.url}/v1/workflows", headers=bearer(key))
        return response.headers.get("ratelimit-policy") == expected

    return await wait_for(shown, timeout=10, interval=SYNC_SECONDS)


async def test_sessions_are_limited_by_the_organizations_default(
    http, client, ledger, limited, org
):
    from helpers import owner_session

    token = await owner_session(client, ledger, org)
    await client.patch(
        "/v1/org",
        headers=bearer(token),
        json={"default_rate_limit": {"requests": 2, "window_seconds": DAY}},
    )
    server, _ = limited
    statuses = [
        (await http.get(f"{server.url}/v1/me", headers=bearer(token))).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


async def test_two_processes_share_the_limit_exactly_once_synced(http, limited, db, org, make_key):
    first, second = limited
    key_id, key = await make_key(
        org, ["workflows:read"], rate_limit={"requests": 10, "window_seconds": DAY}
    )
    answers = [
        (await http.get(f"{first.url}/v1/workflows", headers=bearer(key))).status_code
        for _ in range(11)
    ]
    assert answers == [200] * 10 + [429]

    async def first_process_synced() -> bool:
        async with db.acquire() as conn:
            return (
                await conn.fetchval(
                    "SELECT requests FROM rate_limit_counters WHERE credential_id = $1", key_id
                )
                == 10
            )

    assert await wait_for(first_process_synced, timeout=10, interval=SYNC_SECONDS)
    refused = await http.get(f"{second.url}/v1/workflows", headers=bearer(key))
    assert refused.status_code == 429
    assert remaining_and_reset(refused)[0] == 0


async def test_two_processes_overshoot_at_most_one_sync_interval_of_the_other(
    http, limited, org, make_key
):
    """Requests alternate between the processes at a known pace: the limit may be
    exceeded only by what one process admits before the other's count reaches it,
    about one sync interval of its traffic. Without the sync each process would admit
    the whole limit (2x)."""
    first, second = limited
    limit = 100
    _, key = await make_key(
        org, ["workflows:read"], rate_limit={"requests": limit, "window_seconds": DAY}
    )
    pace = 0.01  # one request every 10 ms: at most ~50 per second per process
    admitted = 0
    for n in range(2 * limit + 40):
        process = (first, second)[n % 2]
        response = await http.get(f"{process.url}/v1/workflows", headers=bearer(key))
        assert response.status_code in (200, 429), response.text
        admitted += response.status_code == 200
        await asyncio.sleep(pace)
    per_process_per_second = 1 / (2 * pace)
    # Three intervals of slack: the interval itself, the sync statement's own time, and
    # a sync delayed on a busy machine. Without the sync it would be 2 * limit.
    bound = limit + per_process_per_second * 3 * SYNC_SECONDS
    assert limit <= admitted <= bound, (admitted, bound)


@pytest.mark.parametrize(
    "body",
    [
        {"requests": 0, "window_seconds": 60},
        {"requests": -1, "window_seconds": 60},
        {"requests": 10, "window_seconds": 0},
        {"requests": 10, "window_seconds": 86_401},
        {"requests": 10**12, "window_seconds": 60},
        {"requests": "10", "window_seconds": 60},
        {"requests": 1.5, "window_seconds": 60},
        {"requests": True, "window_seconds": 60},
        {"requests": 10},
        {"requests": 10, "window_seconds": 60, "burst": 5},
        [10, 60],
        10,
    ],
)
async def test_bad_rate_limits_are_refused_and_change_nothing(client, db, org, make_key, body):
    key_id, _ = await make_key(org, ["workflows:read"])

    async def state():
        async with db.acquire() as conn:
            return (
                await conn.fetchval("SELECT count(*) FROM api_keys WHERE org_id = $1", org.id),
                dict(
                    await conn.fetchrow(
                        "SELECT o.default_rate_limit_requests, o.updated_at, "
                        "k.rate_limit_requests, k.updated_at AS key_updated_at "
                        "FROM organizations o JOIN api_keys k ON k.org_id = o.org_id "
                        "WHERE o.org_id = $1 AND k.id = $2",
                        org.id,
                        key_id,
                    )
                ),
            )

    before = await state()
    responses = [
        await client.post(
            "/v1/api-keys",
            headers=bearer(org.admin_key),
            json={"name": "bad limit", "scopes": ["workflows:read"], "rate_limit": body},
        ),
        await client.patch(
            f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key), json={"rate_limit": body}
        ),
        await client.patch(
            "/v1/org", headers=bearer(org.admin_key), json={"default_rate_limit": body}
        ),
    ]
    for response in responses:
        assert response.status_code in (400, 422), response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert await state() == before


async def test_the_organization_default_cannot_be_unset(client, org):
    response = await client.patch(
        "/v1/org", headers=bearer(org.admin_key), json={"default_rate_limit": None}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "empty_update"


async def test_login_is_limited_per_client_address(http, limited):
    server, _ = limited
    address = new_address()
    body = {"email": f"nobody-{secrets.token_hex(4)}@example.com", "password": "a guess"}
    answers = [
        (
            await http.post(f"{server.url}/v1/sessions", headers=from_address(address), json=body)
        ).status_code
        for _ in range(4)
    ]
    assert answers == [401, 401, 401, 429]
    # Another address behind the same proxy is not limited by the first one.
    other = await http.post(
        f"{server.url}/v1/sessions", headers=from_address(new_address()), json=body
    )
    assert other.status_code == 401


async def test_a_client_cannot_choose_its_address_by_prepending_to_the_header(http, limited):
    server, _ = limited
    address = new_address()
    body = {"key": "not a key"}
    for _ in range(3):
        spoofed = f"{new_address()}, {address}"  # the proxy appends the real client
        response = await http.post(
            f"{server.url}/v1/api-keys/revoke-leaked", headers=from_address(spoofed), json=body
        )
        assert response.status_code == 202
    refused = await http.post(
        f"{server.url}/v1/api-keys/revoke-leaked",
        headers=from_address(f"{new_address()}, {address}"),
        json=body,
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 0 < int(refused.headers["retry-after"]) <= 60


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(http, untrusting):
    body = {"key": "not a key"}
    answers = [
        (
            await http.post(
                f"{untrusting.url}/v1/api-keys/revoke-leaked",
                headers=from_address(new_address()),
                json=body,
            )
        ).status_code
        for _ in range(4)
    ]
    # Each request claims another address, but the peer is what counts.
    assert answers == [202, 202, 202, 429]


async def test_failed_authentication_is_limited_per_address_but_real_keys_still_work(
    http, limited, org, make_key
):
    server, _ = limited
    address = new_address()
    _, real_key = await make_key(org, ["workflows:read"])
    in_use = await http.get(f"{server.url}/v1/workflows", headers=from_address(address, real_key))
    assert in_use.status_code == 200
    invented = [generate_api_key("live") for _ in range(5)]
    answers = [
        (
            await http.get(f"{server.url}/v1/workflows", headers=from_address(address, token))
        ).status_code
        for token in invented
    ]
    assert answers == [401] * 5
    for token in (generate_api_key("live"), generate_session_token(), "vtx_live_garbage"):
        refused = await http.get(f"{server.url}/v1/workflows", headers=from_address(address, token))
        assert refused.status_code == 429, token[:9]
        assert int(refused.headers["retry-after"]) > 0
    # A key this process already knows to be real is not refused for its address's
    # failures (people behind one NAT); unknown ones are, before any database query.
    allowed = await http.get(f"{server.url}/v1/workflows", headers=from_address(address, real_key))
    assert allowed.status_code == 200
    # Other addresses are unaffected.
    fresh = await http.get(
        f"{server.url}/v1/workflows", headers=from_address(new_address(), generate_api_key("live"))
    )
    assert fresh.status_code == 401


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VENTRYX_LOGIN_LIMIT_PER_ADDRESS", "0/60"),
        ("VENTRYX_LOGIN_LIMIT_PER_ADDRESS", "ten"),
        ("VENTRYX_FAILED_AUTH_LIMIT_PER_ADDRESS", "5/-1"),
        ("VENTRYX_TRUSTED_PROXIES", "10.0.0.0/8, proxy.example.com"),
        ("VENTRYX_RATE_LIMIT_SYNC_SECONDS", "0"),
        ("VENTRYX_RATE_LIMIT_SYNC_SECONDS", "soon"),
        ("VENTRYX_PASSWORD_HASH_CONCURRENCY", "0"),
    ],
)
def test_a_bad_limit_setting_stops_the_server_naming_it(monkeypatch, variable, value):
    from ventryx_server.settings import values_from_env

    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit, match=f"^{variable}="):
        values_from_env()


def test_limit_settings_are_read_from_the_environment(monkeypatch):
    from ventryx_server.addresses import AddressLimit
    from ventryx_server.settings import values_from_env

    monkeypatch.setenv("VENTRYX_LOGIN_LIMIT_PER_ADDRESS", "20/10")
    monkeypatch.setenv("VENTRYX_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::1")
    found = values_from_env()
    assert found["login_limit_per_address"] == AddressLimit(20, 10)
    assert [str(n) for n in found["trusted_proxies"]] == ["10.0.0.0/8", "2001:db8::1/128"]


def test_a_window_counts_what_every_process_synced_and_resets_on_time():
    from ventryx_server.auth import Credential
    from ventryx_server.errors import RateLimited
    from ventryx_server.rate_limits import CredentialWindow

    credential = Credential("api_key", "l" * 12, b"h" * 32, "live")
    window = CredentialWindow(
        credential, {"requests": 3, "window_seconds": 10, "window_start": 100, "used": 1}, 100.0
    )
    assert dict(window.admit(104.5))[b"ratelimit"] == b'"default";r=1;t=6'
    # Another process's sync says more were used: this one refuses sooner.
    window.learn({"requests": 3, "window_seconds": 10, "window_start": 100, "used": 3})
    with pytest.raises(RateLimited) as refused:
        window.admit(109.9)
    assert refused.value.headers["Retry-After"] == "1"
    assert dict(window.admit(110.0))[b"ratelimit"] == b'"default";r=2;t=10'


async def test_invented_credentials_cannot_fill_the_limiters_memory(db, queries, org):
    from conftest import TEST_PEPPER
    from ventryx_server.auth import Credential, hash_secret
    from ventryx_server.rate_limits import RateLimiter
    from ventryx_shared.tokens import parse_token

    def credential_of(token: str) -> Credential:
        parsed = parse_token(token)
        return Credential(
            parsed.kind, parsed.lookup_id, hash_secret(TEST_PEPPER, token), parsed.environment
        )

    limiter = RateLimiter(db, queries, 1.0, capacity=4)
    real = credential_of(org.admin_key)
    assert (await limiter.learn(real)).limit == 6000
    for _ in range(10):
        assert (await limiter.learn(credential_of(generate_api_key("live")))).limit is None
    assert len(limiter) <= 4
    assert limiter.known(real).limit == 6000

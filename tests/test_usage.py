"""Key usage: requests counted per key and minute by outcome, across server processes.

Two real server processes share the suite's database, flush usage every 0.2 s and count a
rotated key's traffic as migrated after 2 quiet seconds.
"""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conftest import ServerProcess, bearer, wait_for
from ventryx_server import usage

QUIET_SECONDS = 2
USAGE_ENV = {
    "VENTRYX_USAGE_FLUSH_SECONDS": "0.2",
    "VENTRYX_TRAFFIC_QUIET_SECONDS": str(QUIET_SECONDS),
}


@pytest.fixture(scope="module")
def servers(database_url, server_log_dir):
    started = []
    try:
        for name in ("usage-a", "usage-b"):
            process = ServerProcess(database_url, server_log_dir / f"{name}.log", USAGE_ENV)
            started.append(process)
            process.wait_ready()
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def a(servers):
    async with httpx.AsyncClient(base_url=servers[0].url, timeout=30) as http:
        yield http


@pytest.fixture
async def b(servers):
    async with httpx.AsyncClient(base_url=servers[1].url, timeout=30) as http:
        yield http


async def _key(http, org, scopes, environment="live", **extra):
    response = await http.post(
        "/v1/api-keys",
        headers=bearer(org.admin_key),
        json={"name": "usage", "scopes": scopes, "environment": environment, **extra},
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return data["id"], data["key"]


async def _totals(http, org, key_id, **params):
    response = await http.get(
        f"/v1/api-keys/{key_id}/usage",
        headers=bearer(org.admin_key),
        params={"granularity": "minute", **params},
    )
    assert response.status_code == 200, response.text
    totals = dict.fromkeys(usage.OUTCOMES, 0)
    for bucket in response.json()["data"]["buckets"]:
        for outcome in usage.OUTCOMES:
            totals[outcome] += bucket[outcome]
    return totals


async def _settled(http, org, key_id, expected):
    """The key's totals once they equal ``expected``, or as they are after 10 s (the
    servers flush their counts every 0.2 s)."""
    last = {}

    async def settled():
        last.update(await _totals(http, org, key_id))
        return last == expected

    await wait_for(settled, timeout=10, interval=0.1)
    return last


async def test_counts_match_requests_across_processes_and_environments(a, b, org):
    live_id, live = await _key(a, org, ["events:read"])
    test_id, test = await _key(a, org, ["events:read"], environment="test")
    for http, n in ((a, 7), (b, 5)):
        for _ in range(n):
            assert (await http.get("/v1/events", headers=bearer(live))).status_code == 200
    for http in (a, b, b):
        assert (await http.get("/v1/events", headers=bearer(test))).status_code == 200
        assert (await http.get("/v1/workflows", headers=bearer(test))).status_code == 403
    assert await _settled(a, org, live_id, {**dict.fromkeys(usage.OUTCOMES, 0), "success": 12}) == {
        "success": 12,
        "denied_scope": 0,
        "rate_limited": 0,
        "revoked_or_expired": 0,
    }
    assert await _settled(
        b, org, test_id, {**dict.fromkeys(usage.OUTCOMES, 0), "success": 3, "denied_scope": 3}
    ) == {"success": 3, "denied_scope": 3, "rate_limited": 0, "revoked_or_expired": 0}
    listed = (await a.get("/v1/api-keys", headers=bearer(org.admin_key))).json()["data"]
    by_id = {key["id"]: key for key in listed}
    assert (by_id[live_id]["requests_last_24h"], by_id[test_id]["requests_last_24h"]) == (12, 6)
    assert by_id[live_id]["last_used_at"] is not None


async def test_rate_limited_and_revoked_requests_are_counted_as_such(a, org):
    key_id, key = await _key(
        a, org, ["events:read"], rate_limit={"requests": 2, "window_seconds": 3600}
    )
    statuses = [(await a.get("/v1/events", headers=bearer(key))).status_code for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    assert await _settled(
        a,
        org,
        key_id,
        {"success": 2, "denied_scope": 0, "rate_limited": 3, "revoked_or_expired": 0},
    ) == {"success": 2, "denied_scope": 0, "rate_limited": 3, "revoked_or_expired": 0}


async def test_revoked_and_expired_keys_refusals_are_counted(a, org):
    key_id, key = await _key(a, org, ["events:read"])
    assert (await a.get("/v1/events", headers=bearer(key))).status_code == 200
    assert (
        await a.delete(f"/v1/api-keys/{key_id}", headers=bearer(org.admin_key))
    ).status_code == 200
    for _ in range(3):
        assert (await a.get("/v1/events", headers=bearer(key))).status_code == 401
    assert await _settled(
        a,
        org,
        key_id,
        {"success": 1, "denied_scope": 0, "rate_limited": 0, "revoked_or_expired": 3},
    ) == {"success": 1, "denied_scope": 0, "rate_limited": 0, "revoked_or_expired": 3}
    expiring_id, expiring = await _key(a, org, ["events:read"])
    rotated = await a.post(
        f"/v1/api-keys/{expiring_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 0},
    )
    assert rotated.status_code == 201
    for _ in range(2):
        assert (await a.get("/v1/events", headers=bearer(expiring))).status_code == 401
    assert await _settled(
        a,
        org,
        expiring_id,
        {"success": 0, "denied_scope": 0, "rate_limited": 0, "revoked_or_expired": 2},
    ) == {"success": 0, "denied_scope": 0, "rate_limited": 0, "revoked_or_expired": 2}


async def test_another_orgs_key_is_404_and_reading_usage_needs_the_scope(a, org, make_org):
    other = await make_org("Other")
    other_key_id, _ = await _key(a, other, ["events:read"])
    response = await a.get(f"/v1/api-keys/{other_key_id}/usage", headers=bearer(org.admin_key))
    never = await a.get("/v1/api-keys/key_01NEVEREXISTED/usage", headers=bearer(org.admin_key))
    assert (response.status_code, never.status_code) == (404, 404)
    assert response.json()["error"]["message"].replace(other_key_id, "X") == never.json()["error"][
        "message"
    ].replace("key_01NEVEREXISTED", "X")
    own_id, _ = await _key(a, other, ["events:read"])
    _, lacking = await _key(a, other, ["events:read"])
    refused = await a.get(f"/v1/api-keys/{own_id}/usage", headers=bearer(lacking))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"
    _, reader = await _key(a, other, ["api-keys:read"])
    assert (await a.get(f"/v1/api-keys/{own_id}/usage", headers=bearer(reader))).status_code == 200
    # A test key does not see live keys' usage.
    _, test_reader = await _key(a, other, ["api-keys:read"], environment="test")
    assert (
        await a.get(f"/v1/api-keys/{own_id}/usage", headers=bearer(test_reader))
    ).status_code == 404


async def _put_usage(db, org_id, key_id, table, start, **counts):
    async with db.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {table} (org_id, credential_id, bucket_start, success, denied_scope,"
            " rate_limited, revoked_or_expired) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            org_id,
            key_id,
            start,
            counts.get("success", 0),
            counts.get("denied_scope", 0),
            counts.get("rate_limited", 0),
            counts.get("revoked_or_expired", 0),
        )


async def test_buckets_are_aligned_zero_filled_and_oldest_first(a, org, db):
    key_id, _ = await _key(a, org, ["events:read"])
    base = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    await _put_usage(
        db, org.id, key_id, "credential_usage_minutes", base + timedelta(minutes=1), success=4
    )
    await _put_usage(
        db, org.id, key_id, "credential_usage_minutes", base + timedelta(minutes=3), denied_scope=2
    )
    response = await a.get(
        f"/v1/api-keys/{key_id}/usage",
        headers=bearer(org.admin_key),
        params={
            "granularity": "minute",
            "since": (base + timedelta(seconds=30)).isoformat(),
            "until": (base + timedelta(minutes=4)).isoformat(),
        },
    )
    data = response.json()["data"]
    assert data["since"] == "2026-11-30T10:00:00Z"
    assert data["until"] == "2026-11-30T10:04:00Z"
    assert [(b["start"][11:16], b["success"], b["denied_scope"]) for b in data["buckets"]] == [
        ("10:00", 0, 0),
        ("10:01", 4, 0),
        ("10:02", 0, 0),
        ("10:03", 0, 2),
    ]
    for hour, count in ((9, 1), (10, 5), (23, 7)):
        await _put_usage(
            db, org.id, key_id, "credential_usage_hours", base.replace(hour=hour), success=count
        )
    days = (
        await a.get(
            f"/v1/api-keys/{key_id}/usage",
            headers=bearer(org.admin_key),
            params={
                "granularity": "day",
                "since": "2026-11-29T12:00:00Z",
                "until": "2026-12-01T00:00:00Z",
            },
        )
    ).json()["data"]
    assert [(b["start"], b["success"]) for b in days["buckets"]] == [
        ("2026-11-29T00:00:00Z", 0),
        ("2026-11-30T00:00:00Z", 13),
    ]
    hours = (
        await a.get(
            f"/v1/api-keys/{key_id}/usage",
            headers=bearer(org.admin_key),
            params={
                "granularity": "hour",
                "since": "2026-11-30T09:00:00Z",
                "until": "2026-11-30T11:00:00Z",
            },
        )
    ).json()["data"]
    assert [b["success"] for b in hours["buckets"]] == [1, 5]


@pytest.mark.parametrize(
    ("params", "status", "param"),
    [
        ({"granularity": "week"}, 400, None),
        ({"since": "2026-11-30T10:00:00Z", "until": "2026-11-30T09:00:00Z"}, 400, "since"),
        (
            {
                "granularity": "minute",
                "since": "2026-11-28T00:00:00Z",
                "until": "2026-11-30T00:00:00Z",
            },
            400,
            "since",
        ),
        ({"since": "2026-11-30T10:00:00"}, 400, "since"),
        ({"since": "yesterday"}, 400, None),
        ({"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:59:59Z"}, 400, "since"),
        ({"since": "0001-01-01T00:00:00Z", "until": "0001-01-02T00:00:00Z"}, 400, "since"),
    ],
)
async def test_bad_usage_parameters_are_refused(a, org, params, status, param):
    key_id, _ = await _key(a, org, ["events:read"])
    response = await a.get(
        f"/v1/api-keys/{key_id}/usage", headers=bearer(org.admin_key), params=params
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param


async def test_at_most_1440_buckets_per_call(a, org):
    key_id, _ = await _key(a, org, ["events:read"])
    ok = await a.get(
        f"/v1/api-keys/{key_id}/usage",
        headers=bearer(org.admin_key),
        params={
            "granularity": "minute",
            "since": "2026-11-29T00:00:00Z",
            "until": "2026-11-30T00:00:00Z",
        },
    )
    assert len(ok.json()["data"]["buckets"]) == 1440
    over = await a.get(
        f"/v1/api-keys/{key_id}/usage",
        headers=bearer(org.admin_key),
        params={
            "granularity": "minute",
            "since": "2026-11-29T00:00:00Z",
            "until": "2026-11-30T00:01:00Z",
        },
    )
    assert over.json()["error"]["code"] == "too_many_buckets"


async def test_old_usage_is_pruned_in_batches_and_recent_usage_kept(a, org, db, queries):
    key_id, _ = await _key(a, org, ["events:read"])
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    old_minutes = [now - timedelta(hours=49, minutes=i) for i in range(usage.PRUNE_BATCH + 5)]
    async with db.acquire() as conn:
        await conn.executemany(
            "INSERT INTO credential_usage_minutes (org_id, credential_id, bucket_start, success)"
            " VALUES ($1, $2, $3, 1)",
            [(org.id, key_id, start) for start in old_minutes],
        )
    await _put_usage(
        db, org.id, key_id, "credential_usage_minutes", now - timedelta(hours=47), success=1
    )
    await _put_usage(
        db, org.id, key_id, "credential_usage_hours", now - timedelta(days=91), success=1
    )
    await _put_usage(
        db, org.id, key_id, "credential_usage_hours", now - timedelta(days=89), success=1
    )
    await usage.prune(db, queries, minutes_keep_seconds=48 * 3600, hours_keep_seconds=90 * 86400)
    async with db.acquire() as conn:
        left = await conn.fetch(
            "SELECT 'm' AS t, bucket_start FROM credential_usage_minutes WHERE credential_id = $1"
            " UNION ALL SELECT 'h', bucket_start FROM credential_usage_hours"
            " WHERE credential_id = $1 ORDER BY 1, 2",
            key_id,
        )
    assert [(r["t"], r["bucket_start"]) for r in left] == [
        ("h", now - timedelta(days=89)),
        ("m", now - timedelta(hours=47)),
    ]


async def test_unused_for_lists_keys_without_a_successful_request(a, org, db):
    used_id, used = await _key(a, org, ["events:read"])
    idle_id, _ = await _key(a, org, ["events:read"])
    fresh_id, _ = await _key(a, org, ["events:read"])
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE api_keys SET created_at = now() - interval '40 days' WHERE id = ANY($1)",
            [used_id, idle_id],
        )
    assert (await a.get("/v1/events", headers=bearer(used))).status_code == 200

    async def unused():
        response = await a.get(
            "/v1/api-keys",
            headers=bearer(org.admin_key),
            params={"unused_for": "30d", "limit": 100},
        )
        assert response.status_code == 200, response.text
        return {key["id"] for key in response.json()["data"]}

    async def used_one_flushed():
        return used_id not in await unused()

    assert await wait_for(used_one_flushed, 10)
    assert {used_id, idle_id, fresh_id} & await unused() == {idle_id}
    for bad in ("30", "0d", "abc", "30w", "-1d", "99999d"):
        response = await a.get(
            "/v1/api-keys", headers=bearer(org.admin_key), params={"unused_for": bad}
        )
        assert response.status_code == 400, bad
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_rotated_key_reports_traffic_since_rotation_then_migrated(a, b, org):
    old_id, old = await _key(a, org, ["events:read"])
    plain = (await a.get(f"/v1/api-keys/{old_id}", headers=bearer(org.admin_key))).json()["data"]
    assert (plain["traffic_migrated"], plain["requests_since_rotation"]) == (None, None)
    rotated = await a.post(
        f"/v1/api-keys/{old_id}/rotate",
        headers=bearer(org.admin_key),
        json={"grace_period_seconds": 3600},
    )
    assert rotated.status_code == 201
    for http in (a, b, b):
        assert (await http.get("/v1/events", headers=bearer(old))).status_code == 200

    async def old_key():
        response = await a.get(f"/v1/api-keys/{old_id}", headers=bearer(org.admin_key))
        return response.json()["data"]

    async def served_three():
        return (await old_key())["requests_since_rotation"] == 3

    assert await wait_for(served_three, 10)
    serving = await old_key()
    assert serving["traffic_migrated"] is False
    assert serving["last_used_at"] is not None

    async def migrated():
        return (await old_key())["traffic_migrated"] is True

    assert await wait_for(migrated, QUIET_SECONDS + 5)
    # A request with the old key makes it "still serving" again.
    assert (await a.get("/v1/events", headers=bearer(old))).status_code == 200

    async def serving_again():
        return (await old_key())["traffic_migrated"] is False

    assert await wait_for(serving_again, 5)
    assert (await old_key())["requests_since_rotation"] == 4

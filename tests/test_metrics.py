"""/metrics on its own listener: requests by route and status, authentication outcomes,
the pool, open streams, the background writers' flush lag, pending migrations."""

import re

import httpx
import pytest

from conftest import ServerProcess, bearer, free_port, wait_for


@pytest.fixture(scope="module")
def metered_server(database_url, server_log_dir):
    metrics_port = free_port()
    process = ServerProcess(
        database_url,
        server_log_dir / "server-metrics.log",
        {
            "VENTRYX_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
            "VENTRYX_RATE_LIMIT_SYNC_SECONDS": "0.2",
        },
    )
    process.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    process.wait_ready()
    yield process
    process.stop()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus' text format, None when absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match[3])
    return None


async def scrape(server) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(server.metrics_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_by_route_template_and_status(metered_server, make_org):
    org = await make_org()
    async with httpx.AsyncClient(base_url=metered_server.url, timeout=10) as http:
        for _ in range(3):
            assert (await http.get("/v1/me", headers=bearer(org.admin_key))).status_code == 200
        missing = await http.get(
            "/v1/api-keys/key_01J00000000000000000000000", headers=bearer(org.admin_key)
        )
        assert missing.status_code == 404
        assert (await http.get("/v1/me")).status_code == 401
    text = await scrape(metered_server)
    assert (
        sample(
            text,
            "ventryx_http_request_duration_seconds_count",
            method="GET",
            route="/v1/me",
            status="200",
        )
        >= 3
    )
    assert (
        sample(
            text,
            "ventryx_http_request_duration_seconds_count",
            method="GET",
            route="/v1/api-keys/{key_id}",
            status="404",
        )
        >= 1
    )
    assert (
        sample(
            text,
            "ventryx_http_request_duration_seconds_bucket",
            method="GET",
            route="/v1/me",
            status="200",
            le="+Inf",
        )
        >= 3
    )
    # The typed path (with its id) is never a label: one series per route template.
    assert "key_01J00000000000000000000000" not in text
    assert sample(text, "ventryx_authentications_total", kind="api_key", outcome="accepted") >= 4
    assert sample(text, "ventryx_authentications_total", outcome="rejected") >= 1


async def test_a_wrong_key_is_counted_rejected_and_a_missing_scope_forbidden(
    metered_server, make_org, make_key
):
    org = await make_org()
    _, reader = await make_key(org, ["workflows:read"])
    before = await scrape(metered_server)
    async with httpx.AsyncClient(base_url=metered_server.url, timeout=10) as http:
        assert (await http.get("/v1/api-keys", headers=bearer(reader))).status_code == 403
        tampered = reader[:-1] + ("A" if reader[-1] != "A" else "B")
        assert (await http.get("/v1/me", headers=bearer(tampered))).status_code == 401
    after = await scrape(metered_server)

    def grew(outcome: str) -> float:
        return (sample(after, "ventryx_authentications_total", outcome=outcome) or 0) - (
            sample(before, "ventryx_authentications_total", outcome=outcome) or 0
        )

    assert grew("forbidden") >= 1
    assert grew("rejected") >= 1


async def test_pool_streams_flush_lag_and_migrations_are_reported(metered_server, make_org):
    org = await make_org()
    text = await scrape(metered_server)
    assert sample(text, "ventryx_migrations_pending") == 0

    async def pool_reported():
        # Refreshed once a second; at start-up the pool's connections may all be busy
        # (partition upkeep, the first flushes), so idle and in use together.
        text = await scrape(metered_server)
        return (
            sum(
                sample(text, "ventryx_db_pool_connections", state=state)
                for state in ("idle", "in_use")
            )
            >= 1
        )

    assert await wait_for(pool_reported, timeout=5)
    assert sample(text, "ventryx_db_pool_waiting") == 0
    # ServerProcess flushes usage every 0.2 s: the lag stays near that, never growing.
    assert sample(text, "ventryx_background_flush_lag_seconds", writer="usage") < 5
    assert sample(text, "ventryx_background_flush_lag_seconds", writer="rate_limits") < 5
    async with (
        httpx.AsyncClient(base_url=metered_server.url, timeout=10) as http,
        http.stream("GET", "/v1/events/stream", headers=bearer(org.admin_key)) as stream,
    ):
        assert stream.status_code == 200

        async def one_stream_open():
            return sample(await scrape(metered_server), "ventryx_event_streams_open") == 1

        assert await wait_for(one_stream_open, timeout=5)

    async def none_open():
        return sample(await scrape(metered_server), "ventryx_event_streams_open") == 0

    assert await wait_for(none_open, timeout=5)


async def test_metrics_are_not_served_on_the_api_port(metered_server, client):
    async with httpx.AsyncClient(base_url=metered_server.url, timeout=10) as http:
        assert (await http.get("/metrics")).status_code == 404
    assert (await client.get("/metrics")).status_code == 404


def test_a_malformed_metrics_address_stops_the_server(database_url, tmp_path):
    process = ServerProcess(database_url, tmp_path / "bad.log", {"VENTRYX_METRICS_ADDRESS": "9464"})
    try:
        assert process.process.wait(30) != 0
    finally:
        process.stop()
    assert "VENTRYX_METRICS_ADDRESS='9464': must be HOST:PORT" in (tmp_path / "bad.log").read_text()

"""CredentialReader: the offline half of authentication, and the memo that keeps it cheap.

The memo may only ever save work: the same header must give the same credential as a
fresh parse, refusals must be re-checked every time, and nothing may stay in it long
after a client stops sending it. That revocation still counts from the next request is
tested end to end in test_revocation.py (the same key before and after, so a memo hit).
"""

import secrets

import pytest

from conftest import wait_for
from ventryx_server.auth import CredentialReader, hash_secret
from ventryx_server.errors import InvalidRequest, Unauthenticated
from ventryx_shared.tokens import generate_api_key, generate_session_token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scope_for(
    authorization: str | None, *, environment: str | None = None, query: bytes = b""
) -> dict:
    headers = [(b"host", b"api.ventryx.test")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    if environment is not None:
        headers.append((b"ventryx-environment", environment.encode()))
    return {"type": "http", "headers": headers, "query_string": query}


def test_a_remembered_credential_equals_a_fresh_parse():
    pepper = secrets.token_bytes(32)
    reader = CredentialReader(pepper)
    key = generate_api_key("test")
    first = reader.read(scope_for(f"Bearer {key}"))
    second = reader.read(scope_for(f"Bearer {key}"))
    fresh = CredentialReader(pepper).read(scope_for(f"Bearer {key}"))
    assert first == second == fresh
    assert first.kind == "api_key" and first.environment == "test"
    assert first.lookup_id == key[9:21]
    assert first.secret_hash == hash_secret(pepper, key)
    assert len(reader) == 1


def test_readers_with_different_peppers_never_share_an_answer():
    key = generate_api_key("live")
    one = CredentialReader(secrets.token_bytes(32)).read(scope_for(f"Bearer {key}"))
    other = CredentialReader(secrets.token_bytes(32)).read(scope_for(f"Bearer {key}"))
    assert one.lookup_id == other.lookup_id
    assert one.secret_hash != other.secret_hash


def test_two_keys_are_never_confused():
    reader = CredentialReader(secrets.token_bytes(32))
    keys = [generate_api_key("live") for _ in range(50)]
    for _ in range(2):
        credentials = [reader.read(scope_for(f"Bearer {key}")) for key in keys]
        assert len({c.secret_hash for c in credentials}) == 50
        assert [c.lookup_id for c in credentials] == [key[9:21] for key in keys]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer vtx_live_short",
        "Bearer " + generate_api_key("live")[:-1] + "0",
    ],
)
def test_refusals_are_not_remembered(authorization):
    reader = CredentialReader(secrets.token_bytes(32))
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            reader.read(scope_for(authorization))
    assert len(reader) == 0


def test_a_remembered_key_in_the_query_string_is_still_refused():
    reader = CredentialReader(secrets.token_bytes(32))
    key = generate_api_key("live")
    reader.read(scope_for(f"Bearer {key}"))
    with pytest.raises(Unauthenticated) as refused:
        reader.read(scope_for(f"Bearer {key}", query=f"api_key={key}".encode()))
    assert refused.value.code == "credential_in_query"


def test_a_session_takes_its_environment_from_each_request():
    reader = CredentialReader(secrets.token_bytes(32))
    token = generate_session_token()
    live = reader.read(scope_for(f"Bearer {token}"))
    test = reader.read(scope_for(f"Bearer {token}", environment="test"))
    assert (live.kind, live.environment) == ("session", "live")
    assert (test.kind, test.environment) == ("session", "test")
    assert live.secret_hash == test.secret_hash
    with pytest.raises(InvalidRequest):
        reader.read(scope_for(f"Bearer {token}", environment="prod"))


def test_a_header_not_seen_for_two_ttls_is_forgotten_and_one_in_use_is_kept():
    clock = Clock()
    reader = CredentialReader(secrets.token_bytes(32), ttl=60, clock=clock)

    def wait(seconds: int) -> None:  # as the server's `forgetting` task: a turn every ttl / 4
        for _ in range(seconds // 15):
            clock.now += 15
            reader.forget_stale()

    idle, busy = generate_api_key("live"), generate_api_key("live")
    reader.read(scope_for(f"Bearer {idle}"))
    for _ in range(5):
        reader.read(scope_for(f"Bearer {busy}"))
        wait(45)
    assert len(reader) == 1  # idle went within two ttls; busy, in use, stayed
    wait(120)
    assert len(reader) == 0  # nothing outlives two ttls of quiet


async def _is_empty(reader: CredentialReader) -> bool:
    return len(reader) == 0


async def test_the_server_task_forgets_without_any_request():
    reader = CredentialReader(secrets.token_bytes(32), ttl=0.04)
    reader.read(scope_for("Bearer " + generate_api_key("live")))
    async with reader.forgetting():
        assert await wait_for(lambda: _is_empty(reader))
    assert len(reader) == 0


def test_the_memo_never_grows_past_its_capacity():
    reader = CredentialReader(secrets.token_bytes(32), capacity=100)
    for _ in range(450):
        reader.read(scope_for("Bearer " + generate_api_key("live")))
        assert len(reader) <= 200  # capacity for this minute's headers and last minute's
    assert len(reader._current) <= 100

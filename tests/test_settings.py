"""Settings from the environment: one table of variables, one parser, a clear refusal."""

import re

import pytest

from conftest import ROOT, TEST_PEPPER
from ventryx_server.settings import FROM_ENV, Settings, values_from_env

# Set by the CLI for its own worker processes, not by operators.
INTERNAL = {"VENTRYX_WORKERS"}


def readme_configuration_variables() -> set[str]:
    """The variables of the README's Configuration table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(VENTRYX_[A-Z_]+)`", table, flags=re.MULTILINE))


def test_every_variable_the_server_reads_is_documented_and_every_documented_one_is_read():
    documented = readme_configuration_variables()
    readme = (ROOT / "README.md").read_text()
    for variable in FROM_ENV.keys() - INTERNAL:
        assert f"`{variable}" in readme, f"{variable} is read but the README never names it"
    # The pepper is read by load_pepper (a secret, never a Settings field from the table).
    assert documented - FROM_ENV.keys() == {"VENTRYX_PEPPER", "VENTRYX_PEPPER_FILE"}


def test_an_unset_variable_keeps_the_default_and_a_set_one_is_parsed():
    assert values_from_env({}) == {}
    settings = Settings(
        database_url="postgresql://unused",
        pepper=TEST_PEPPER,
        **values_from_env(
            {
                "VENTRYX_STREAM_HEARTBEAT_SECONDS": "0.5",
                "VENTRYX_USAGE_COUNTING": "off",
                "VENTRYX_USAGE_MINUTES_KEEP_HOURS": "2",
                "VENTRYX_MAX_CONNECTIONS": "50",
                "VENTRYX_LEAK_REPORT_LIMIT_PER_ADDRESS": "7/30",
                "UNRELATED": "x",
            }
        ),
    )
    assert settings.stream_heartbeat_seconds == 0.5
    assert settings.usage_counting is False
    assert settings.usage_minutes_keep_seconds == 2 * 3600
    assert settings.max_connections == 50
    assert (
        settings.address_limits["leak_report"].requests,
        settings.address_limits["leak_report"].window_seconds,
    ) == (7, 30)
    assert settings.address_limits["login"] == Settings.login_limit_per_address
    assert Settings(database_url="x", pepper=TEST_PEPPER).stream_heartbeat_seconds == 15


def test_the_pool_size_sets_each_credentials_share_unless_it_is_given():
    def settings(**env: str) -> Settings:
        return Settings(database_url="x", pepper=TEST_PEPPER, **values_from_env(env))

    assert (settings().pool_max_size, settings().credential_connections) == (20, 16)
    assert settings(VENTRYX_POOL_SIZE="5").credential_connections == 4
    assert settings(VENTRYX_POOL_SIZE="1").credential_connections == 1
    given = settings(VENTRYX_POOL_SIZE="5", VENTRYX_CONNECTIONS_PER_CREDENTIAL="2")
    assert (given.pool_max_size, given.credential_connections) == (5, 2)


def test_a_credentials_share_larger_than_the_pool_stops_the_server(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused")
    monkeypatch.setenv("VENTRYX_PEPPER", TEST_PEPPER.hex())
    monkeypatch.setenv("VENTRYX_POOL_SIZE", "5")
    monkeypatch.setenv("VENTRYX_CONNECTIONS_PER_CREDENTIAL", "6")
    with pytest.raises(SystemExit, match="^VENTRYX_CONNECTIONS_PER_CREDENTIAL=6 is more than"):
        Settings.from_env()
    monkeypatch.setenv("VENTRYX_CONNECTIONS_PER_CREDENTIAL", "5")  # the twin: the whole pool
    assert Settings.from_env().credential_connections == 5


@pytest.mark.parametrize("variable", sorted(FROM_ENV))
def test_a_value_a_variable_cannot_take_stops_the_server_naming_it(variable):
    with pytest.raises(SystemExit, match=f"^{variable}='not a value': "):
        values_from_env({variable: "not a value"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VENTRYX_POOL_TIMEOUT_SECONDS", "0"),
        ("VENTRYX_POOL_TIMEOUT_SECONDS", "nan"),
        ("VENTRYX_USAGE_HOURS_KEEP_DAYS", "3661"),
        ("VENTRYX_MAX_CONNECTIONS", "0"),
        ("VENTRYX_POOL_SIZE", "0"),
        ("VENTRYX_CONNECTIONS_PER_CREDENTIAL", "1001"),
        ("VENTRYX_HEADER_READ_TIMEOUT_SECONDS", "0.01"),
        ("VENTRYX_LOG_FORMAT", "JSON"),
        ("VENTRYX_METRICS_ADDRESS", "127.0.0.1:70000"),
        ("VENTRYX_USAGE_COUNTING", "yes"),
    ],
)
def test_a_value_out_of_range_is_refused_and_its_twin_in_range_is_taken(variable, value):
    with pytest.raises(SystemExit, match=f"^{variable}="):
        values_from_env({variable: value})
    in_range = {
        "VENTRYX_POOL_TIMEOUT_SECONDS": "0.5",
        "VENTRYX_USAGE_HOURS_KEEP_DAYS": "3660",
        "VENTRYX_MAX_CONNECTIONS": "1",
        "VENTRYX_POOL_SIZE": "1",
        "VENTRYX_CONNECTIONS_PER_CREDENTIAL": "1000",
        "VENTRYX_HEADER_READ_TIMEOUT_SECONDS": "0.1",
        "VENTRYX_LOG_FORMAT": "json",
        "VENTRYX_METRICS_ADDRESS": "127.0.0.1:9464",
        "VENTRYX_USAGE_COUNTING": "on",
    }[variable]
    assert len(values_from_env({variable: in_range})) == 1

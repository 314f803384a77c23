"""The dashboard's one reconnect policy: how often an idle dashboard checks that its server
is there, and how long to wait between tries once it is not (the app's reconnect loop, the
start screen's wait for a saved server, and the live tail's stream all use it)."""

from __future__ import annotations

# An idle dashboard asks /healthz this often, each answer bounded by PROBE_TIMEOUT_SECONDS,
# so a server that went away shows as "reconnecting" within 2 + 2 s, key press or not.
HEARTBEAT_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0

# Quick at first (a restart takes a second or two), then every 5 s, so a long outage costs
# the server nothing much when it comes back to many dashboards.
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before try number ``attempt`` (0-based)."""
    return RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]

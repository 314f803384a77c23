"""Client addresses, and the per-address limits of the surfaces anyone can reach.

The client address is the TCP peer, unless the peer is a proxy listed in
``VENTRYX_TRUSTED_PROXIES``: then it is the last address of ``X-Forwarded-For`` that is
not itself a trusted proxy, so a client cannot choose its address by sending the header.

Per-address limits count requests in fixed windows, in each server process's memory (a
login or leak report already costs more than counting it in the database would save,
but these limits exist to shed load cheaply, before that work): with N processes an
address gets at most N times the limit.
"""

import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from litestar.types import Scope

from .errors import RateLimited
from .json_body import check_input
from .request_type import AppRequest

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """``10.0.0.0/8, 192.168.1.7`` -> networks; raises ValueError naming a bad entry."""
    networks = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(networks)


def _is_trusted(address: str, proxies: Iterable[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(scope: Scope) -> str:
    """The address the request came from, honouring X-Forwarded-For only from proxies."""
    client = scope.get("client")
    peer = client[0] if client else UNKNOWN
    proxies = scope["litestar_app"].state.settings.trusted_proxies
    if not proxies or not _is_trusted(peer, proxies):
        return peer
    forwarded = [
        value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
    ]
    hops = [hop.strip() for hop in ",".join(forwarded).split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a proxy passed on garbage: the proxy is all we know
    return hops[0] if hops else peer


@dataclass(frozen=True, slots=True)
class AddressLimit:
    """At most ``requests`` per fixed window of ``window_seconds``, per address."""

    requests: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> "AddressLimit":
        """``"300/60"``: 300 requests per 60 seconds."""
        requests, _, window = text.partition("/")
        try:
            limit = cls(int(requests), int(window or 60))
        except ValueError:
            raise ValueError(f"expected REQUESTS/SECONDS such as 300/60, not {text!r}") from None
        if limit.requests < 1 or limit.window_seconds < 1:
            raise ValueError(f"both numbers must be at least 1: {text!r}")
        return limit


class AddressLimiter:
    """Fixed-window counters per (surface, address), in this process's memory."""

    def __init__(
        self,
        limits: dict[str, AddressLimit],
        *,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._capacity = capacity
        self._clock = clock
        self._counts: dict[tuple[str, str], list[int]] = {}  # -> [window start, count]

    def _entry(self, surface: str, address: str) -> tuple[AddressLimit, list[int], int]:
        limit = self._limits[surface]
        second = int(self._clock())
        start = second - second % limit.window_seconds
        entry = self._counts.get((surface, address))
        if entry is None or entry[0] != start:
            if len(self._counts) >= self._capacity:
                self._forget_ended(second)
            entry = self._counts[(surface, address)] = [start, 0]
        return limit, entry, start + limit.window_seconds - second

    def _forget_ended(self, second: int) -> None:
        self._counts = {
            key: entry
            for key, entry in self._counts.items()
            if entry[0] + self._limits[key[0]].window_seconds > second
        }
        if len(self._counts) >= self._capacity:  # a flood of addresses: start over
            self._counts.clear()

    def check(self, surface: str, address: str) -> None:
        """429 if ``address`` has used up ``surface``'s limit; counts nothing."""
        limit, entry, reset = self._entry(surface, address)
        if entry[1] >= limit.requests:
            raise _refusal(surface, limit, reset)

    def count(self, surface: str, address: str) -> None:
        """Counts one request, or refuses it (429) when the window is full."""
        limit, entry, reset = self._entry(surface, address)
        if entry[1] >= limit.requests:
            raise _refusal(surface, limit, reset)
        entry[1] += 1


_WHAT = {
    "login": "login attempts",
    "leak_report": "leaked-key reports",
    "failed_authentication": "requests with an invalid credential",
}


def _refusal(surface: str, limit: AddressLimit, reset: int) -> RateLimited:
    return RateLimited(
        f"Too many {_WHAT[surface]} from your address: at most {limit.requests} per "
        f"{limit.window_seconds} seconds. Retry after {reset} seconds.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(reset)},
    )


def limit_by_address(surface: str) -> Callable[[AppRequest], Awaitable[None]]:
    """A before-request hook for a public route: counts the request against its address."""

    async def hook(request: AppRequest) -> None:
        request.app.state.address_limits.count(surface, client_address(request.scope))
        await check_input(request)

    hook.__name__ = f"limit_{surface}_by_address"
    return hook

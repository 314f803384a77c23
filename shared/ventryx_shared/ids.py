"""Prefixed, time-sortable ids: ``key_01HXYZ…`` is a prefix, an underscore and a ULID."""

import os
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_CHARACTERS = "[0-9A-HJKMNP-TV-Z]{26}"
_ULID = re.compile(_ULID_CHARACTERS)


def _new_ulid() -> str:
    """A ULID: 48 bits of milliseconds, then 80 random bits, in Crockford base32."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_id(prefix: str) -> str:
    return f"{prefix}_{_new_ulid()}"


def is_id(prefix: str, value: str) -> bool:
    """Whether ``value`` has the shape of an id with this prefix (it may still not exist)."""
    head, sep, tail = value.partition("_")
    return sep == "_" and head == prefix and _ULID.fullmatch(tail) is not None


def id_pattern(prefix: str) -> str:
    """The regular expression (for the OpenAPI document) of ``is_id(prefix, …)``."""
    return f"^{prefix}_{_ULID_CHARACTERS}$"

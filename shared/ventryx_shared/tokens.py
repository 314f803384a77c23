"""The API key format: ``vtx_{live|test}_`` + lookup id + secret + CRC32 checksum.

Everything after the prefix is base62 (letters and digits), so a double click selects
the whole key. The checksum lets a scanner, or the server before any database query,
reject a mistyped or made-up key offline. The lookup id finds the stored record; the
secret (190 random bits) is what proves possession and is never stored.
"""

import secrets
import zlib
from dataclasses import dataclass
from typing import Literal

from .common import Environment

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_SET = frozenset(BASE62)

LOOKUP_LENGTH = 12
SECRET_LENGTH = 32  # 32 * log2(62) = 190 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
BODY_LENGTH = LOOKUP_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH

KEY_PREFIXES: dict[str, Environment] = {"vtx_live_": "live", "vtx_test_": "test"}
SESSION_PREFIX = "vtxs_"
REDACTION_TAIL = 4


def _base62(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def _random_base62(length: int) -> str:
    # One draw from the OS for the whole string (secrets.choice per character made one
    # getrandom call each, 44 per key): uniform below 62**length, so each digit is too.
    return _base62(secrets.randbelow(62**length), length)


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode("ascii")), CHECKSUM_LENGTH)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A well-formed credential: where to look it up, and the full text to hash."""

    kind: Literal["api_key", "session"]
    environment: Environment | None
    lookup_id: str
    token: str


def _generate(prefix: str) -> str:
    body = _random_base62(LOOKUP_LENGTH) + _random_base62(SECRET_LENGTH)
    return prefix + body + _checksum(prefix + body)


def generate_api_key(environment: Environment) -> str:
    return _generate(f"vtx_{environment}_")


def generate_session_token() -> str:
    return _generate(SESSION_PREFIX)


def parse_token(token: str) -> ParsedToken | None:
    """The parsed credential, or None when it cannot be one of ours (no database needed)."""
    for prefix, environment in KEY_PREFIXES.items():
        if token.startswith(prefix):
            return _parse(token, prefix, "api_key", environment)
    if token.startswith(SESSION_PREFIX):
        return _parse(token, SESSION_PREFIX, "session", None)
    return None


def _parse(
    token: str, prefix: str, kind: Literal["api_key", "session"], environment: Environment | None
) -> ParsedToken | None:
    body = token[len(prefix) :]
    if len(body) != BODY_LENGTH or not _BASE62_SET.issuperset(body):
        return None
    payload, checksum = body[:-CHECKSUM_LENGTH], body[-CHECKSUM_LENGTH:]
    if _checksum(prefix + payload) != checksum:
        return None
    return ParsedToken(kind, environment, body[:LOOKUP_LENGTH], token)


def looks_like_credential(text: str) -> bool:
    """Whether a string carries something shaped like a Ventryx credential."""
    return "vtx_live_" in text or "vtx_test_" in text or SESSION_PREFIX in text


def redact(prefix: str, tail: str) -> str:
    """The form lists and reads show: ``vtx_live_…wxyz``."""
    return f"{prefix}…{tail}"

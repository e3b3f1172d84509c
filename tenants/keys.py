"""API key format, generation, parsing and hashing. Pure: no database, no cache.

Format: ``fw_<keyid>_<secret><checksum>``

- keyid: 12 base62 chars, public, stored in clear and indexed (the lookup handle);
- secret: 32 base62 chars (~190 bits) from `secrets`; only its HMAC is stored;
- checksum: CRC32 of everything before it, base62, fixed width 6, so typos and truncated
  pastes are rejected before any database or cache lookup.

Nothing here puts a secret into a repr, str or exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass, field

from django.conf import settings

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIX = "fw"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
MAX_SECRET_LENGTH = 128  # accept longer secrets from a future generator, but bound the input

_KEY_RE = re.compile(
    rf"^{PREFIX}_(?P<key_id>[0-9A-Za-z]{{{KEY_ID_LENGTH}}})_"
    rf"(?P<tail>[0-9A-Za-z]{{{SECRET_LENGTH + CHECKSUM_LENGTH},{MAX_SECRET_LENGTH + CHECKSUM_LENGTH}}})$"
)


class InvalidKey(ValueError):
    """The presented string is not a usable Fairway key. Messages never include the key."""


class MalformedKey(InvalidKey):
    pass


class BadChecksum(InvalidKey):
    pass


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str = field(repr=False)
    last4: str


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    key_id: str
    secret: str = field(repr=False)
    plaintext: str = field(repr=False)
    last4: str


def _base62(number: int, *, width: int) -> str:
    chars = []
    while number:
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars)).rjust(width, ALPHABET[0])


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), width=CHECKSUM_LENGTH)


def generate() -> GeneratedKey:
    key_id, secret = _random(KEY_ID_LENGTH), _random(SECRET_LENGTH)
    body = f"{PREFIX}_{key_id}_{secret}"
    plaintext = body + checksum(body)
    return GeneratedKey(key_id=key_id, secret=secret, plaintext=plaintext, last4=plaintext[-4:])


def parse(raw: str) -> ParsedKey:
    """Split a presented key; raise MalformedKey or BadChecksum (no I/O happens here)."""
    if not isinstance(raw, str):
        raise MalformedKey("API key must be a string.")
    match = _KEY_RE.match(raw)
    if match is None:
        raise MalformedKey("API key is malformed.")
    body, given = raw[:-CHECKSUM_LENGTH], raw[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum(body), given):
        raise BadChecksum("API key checksum does not match (mistyped or truncated key).")
    return ParsedKey(key_id=match["key_id"], secret=match["tail"][:-CHECKSUM_LENGTH], last4=raw[-4:])


def hash_secret(secret: str, *, pepper: str | None = None) -> str:
    """HMAC-SHA256(pepper, secret) as hex; the pepper lives outside the database."""
    key = (pepper if pepper is not None else settings.FAIRWAY_KEY_PEPPER).encode()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, secret_hash: str, *, pepper: str | None = None) -> bool:
    return hmac.compare_digest(hash_secret(secret, pepper=pepper), secret_hash)

"""AES-256-GCM primitives for envelope encryption. Pure: no Django, no database, no logging.

Two layers:
- KEKs (key-encryption keys) come from FAIRWAY_KEKS ("id:<base64 32 bytes>,…", first = primary) and
  only ever wrap DEKs.
- DEKs (one per tenant and version) encrypt message bodies, titles, metadata and system prompts.

Every ciphertext is `FORMAT ‖ nonce(12) ‖ ciphertext+tag(16)` with a fresh random 96-bit nonce, and
its associated data names exactly where it belongs (tenant, conversation, row, field, key version),
so a blob copied to another row, field or tenant fails authentication instead of decrypting.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from dataclasses import dataclass, field
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = b"\x01"  # blob layout version: lets a future format coexist with stored rows
NONCE_BYTES = 12
KEY_BYTES = 32
_KEK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class KeyConfigError(ValueError):
    """FAIRWAY_KEKS is missing or malformed. Messages name ids and positions, never key material."""


class DecryptionError(Exception):
    """A ciphertext failed authentication: wrong key, moved blob, or tampering. Carries no content."""


@dataclass(frozen=True)
class Kek:
    id: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class KeyRing:
    keks: tuple[Kek, ...]

    @property
    def primary(self) -> Kek:
        return self.keks[0]

    def get(self, kek_id: str) -> Kek | None:
        return next((kek for kek in self.keks if kek.id == kek_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(kek.id for kek in self.keks)


def keyring_parse(raw: str) -> KeyRing:
    """Parse "id:<base64>,id:<base64>" (first = primary); raise KeyConfigError on any defect."""
    entries = [item.strip() for item in (raw or "").split(",") if item.strip()]
    if not entries:
        raise KeyConfigError("FAIRWAY_KEKS is empty: set it to 'id:<base64 of 32 random bytes>[,…]' "
                             "(generate one with `manage.py kek_generate`).")
    keks: list[Kek] = []
    for position, entry in enumerate(entries, start=1):
        kek_id, sep, encoded = entry.partition(":")
        kek_id = kek_id.strip()
        if not sep or not _KEK_ID.match(kek_id):
            raise KeyConfigError(f"FAIRWAY_KEKS entry #{position} must look like 'id:<base64>' with an id of "
                                 "1-32 characters [A-Za-z0-9_.-].")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = None
        if key is None or len(key) != KEY_BYTES:
            raise KeyConfigError(f"FAIRWAY_KEKS entry '{kek_id}' is not base64 of exactly {KEY_BYTES} bytes.")
        if any(existing.id == kek_id for existing in keks):
            raise KeyConfigError(f"FAIRWAY_KEKS lists the id '{kek_id}' twice.")
        keks.append(Kek(id=kek_id, key=key))
    return KeyRing(keks=tuple(keks))


def kek_generate_line(kek_id: str) -> str:
    """A fresh FAIRWAY_KEKS entry for operators (printed once by `manage.py kek_generate`)."""
    if not _KEK_ID.match(kek_id):
        raise KeyConfigError("A KEK id must be 1-32 characters [A-Za-z0-9_.-].")
    return f"{kek_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def dek_generate() -> bytes:
    return AESGCM.generate_key(bit_length=256)


# --- associated data ----------------------------------------------------------------------------
# Fixed-width binary fields after a domain label: no separator can be forged by a crafted value.

def aad_dek(*, tenant_id: UUID, version: int, kek_id: str) -> bytes:
    return b"fairway.dek.v1\x00" + tenant_id.bytes + struct.pack(">I", version) + kek_id.encode()


def aad_message(*, tenant_id: UUID, conversation_id: UUID, message_id: UUID | bytes, version: int, role: str,
                seq: int) -> bytes:
    # message_id may arrive as its 16 raw bytes: the history hot path skips building UUID objects.
    raw_id = message_id if isinstance(message_id, bytes) else message_id.bytes
    return (b"fairway.msg.v1\x00" + tenant_id.bytes + conversation_id.bytes + raw_id
            + struct.pack(">IQ", version, seq) + role.encode())


_SEQ = struct.Struct(">IQ")


def history_opener(*, tenant_id: UUID, conversation_id: UUID):
    """A fast `unseal` for many messages of one conversation (the per-turn history read).

    Same format and AAD as `seal(..., aad_message(...))`, with the constant AAD prefix built once and
    the message id taken as its 16 raw bytes; ~2x cheaper per message than the general path.
    """
    prefix = b"fairway.msg.v1\x00" + tenant_id.bytes + conversation_id.bytes

    def open_(cipher: AESGCM, version: int, message_id: bytes, role: str, seq: int, blob: bytes) -> bytes:
        if blob[:1] != FORMAT or len(blob) < 1 + NONCE_BYTES + 16:
            raise DecryptionError("ciphertext has an unknown format")
        try:
            return cipher.decrypt(blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:],
                                  prefix + message_id + _SEQ.pack(version, seq) + role.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None

    return open_


def aad_field(*, tenant_id: UUID, conversation_id: UUID, name: str, version: int) -> bytes:
    """Conversation-level fields (title, metadata, system prompt): the field name is bound too."""
    return (b"fairway.conv.v1\x00" + tenant_id.bytes + conversation_id.bytes + struct.pack(">I", version)
            + name.encode())


# --- sealing ------------------------------------------------------------------------------------

def seal(cipher: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT + nonce + cipher.encrypt(nonce, plaintext, aad)


def unseal(cipher: AESGCM, blob: bytes, aad: bytes) -> bytes:
    blob = bytes(blob)  # BinaryField may hand back memoryview (PostgreSQL)
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != FORMAT:
        raise DecryptionError("ciphertext has an unknown format")
    try:
        return cipher.decrypt(blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError("ciphertext failed authentication") from None


def dek_wrap(*, kek: Kek, dek: bytes, tenant_id: UUID, version: int) -> bytes:
    return seal(AESGCM(kek.key), dek, aad_dek(tenant_id=tenant_id, version=version, kek_id=kek.id))


def dek_unwrap(*, kek: Kek, wrapped: bytes, tenant_id: UUID, version: int) -> bytes:
    return unseal(AESGCM(kek.key), wrapped, aad_dek(tenant_id=tenant_id, version=version, kek_id=kek.id))

"""Sealing and opening of conversation content with a tenant DEK (AAD = exactly where it belongs)."""

from __future__ import annotations

import json
from uuid import UUID

from . import crypto
from .keystore import ActiveKey

TITLE, METADATA, SYSTEM = "title", "metadata", "system_prompt"


def message_seal(key: ActiveKey, *, conversation_id: UUID, message_id: UUID, role: str, seq: int,
                 content: str) -> bytes:
    aad = crypto.aad_message(tenant_id=key.tenant_id, conversation_id=conversation_id, message_id=message_id,
                             version=key.version, role=role, seq=seq)
    return crypto.seal(key.cipher, content.encode(), aad)


def message_open(key: ActiveKey, *, tenant_id: UUID, conversation_id: UUID, message_id: UUID | bytes, role: str,
                 seq: int, blob: bytes) -> str:
    # tenant_id is the caller's expectation (not the key's): a DEK of another tenant can never match.
    aad = crypto.aad_message(tenant_id=tenant_id, conversation_id=conversation_id, message_id=message_id,
                             version=key.version, role=role, seq=seq)
    return crypto.unseal(key.cipher, blob, aad).decode()


def field_seal(key: ActiveKey, *, conversation_id: UUID, name: str, value) -> bytes | None:
    if value is None:
        return None
    raw = json.dumps(value, separators=(",", ":")).encode() if name == METADATA else value.encode()
    aad = crypto.aad_field(tenant_id=key.tenant_id, conversation_id=conversation_id, name=name, version=key.version)
    return crypto.seal(key.cipher, raw, aad)


def field_open(key: ActiveKey, *, tenant_id: UUID, conversation_id: UUID, name: str, blob: bytes | None):
    if blob is None:
        return {} if name == METADATA else None
    aad = crypto.aad_field(tenant_id=tenant_id, conversation_id=conversation_id, name=name, version=key.version)
    raw = crypto.unseal(key.cipher, blob, aad)
    return json.loads(raw) if name == METADATA else raw.decode()

"""Sealing of stored idempotent results (they hold model output, i.e. customer content).

AES-256-GCM under a key derived from SECRET_KEY (HKDF, purpose-bound), with the tenant and the
Idempotency-Key as associated data, so a row copied to another tenant or key does not open.
"""

from __future__ import annotations

import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_keys: dict[str, bytes] = {}


def _key() -> bytes:
    secret = settings.SECRET_KEY
    if secret not in _keys:
        _keys[secret] = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                             info=b"fairway/idempotency-results/v1").derive(secret.encode())
    return _keys[secret]


def _aad(tenant_id: str, key: str) -> bytes:
    return f"{tenant_id}\x00{key}".encode()


def result_seal(*, tenant_id: str, key: str, result: dict) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key()).encrypt(nonce, json.dumps(result).encode(), _aad(tenant_id, key))


def result_open(*, tenant_id: str, key: str, sealed: bytes) -> dict:
    sealed = bytes(sealed)
    return json.loads(AESGCM(_key()).decrypt(sealed[:12], sealed[12:], _aad(tenant_id, key)))

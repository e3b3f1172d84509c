"""Tenant data keys (DEKs): create, unwrap, rotate to a new version, re-wrap under a new KEK, destroy.

Unwrapped DEKs are cached in this process's memory only (never in Redis or any shared cache) for
FAIRWAY_DEK_CACHE_SECONDS, so the hot path does not unwrap on every request. Destroying or rotating
keys evicts this process's cache; other processes drop theirs within the TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from . import crypto
from .models import DataKey

logger = logging.getLogger("fairway.conversations")


@dataclass(frozen=True)
class ActiveKey:
    """An unwrapped DEK version, ready to seal/open (the raw key stays inside the AESGCM object)."""

    dek_id: int
    tenant_id: UUID
    version: int
    cipher: AESGCM = field(repr=False, compare=False)


_lock = threading.Lock()
_by_id: dict[int, tuple[float, ActiveKey]] = {}
_primary: dict[UUID, tuple[float, int]] = {}
_ring: tuple[str, crypto.KeyRing] | None = None


def _monotonic() -> float:
    return time.monotonic()


def keyring() -> crypto.KeyRing:
    """The configured KEKs (parsed once per distinct FAIRWAY_KEKS value; raises KeyConfigError)."""
    global _ring
    raw = settings.FAIRWAY_KEKS
    ring = _ring
    if ring is None or ring[0] != raw:
        ring = (raw, crypto.keyring_parse(raw))
        _ring = ring
    return ring[1]


def cache_evict(*, tenant_id: UUID | None = None) -> None:
    with _lock:
        if tenant_id is None:
            _by_id.clear()
            _primary.clear()
            return
        _primary.pop(tenant_id, None)
        for dek_id in [k for k, (_, key) in _by_id.items() if key.tenant_id == tenant_id]:
            del _by_id[dek_id]


def _cached(table: dict, key):
    with _lock:
        hit = table.get(key)
        if hit is not None and hit[0] > _monotonic():
            return hit[1]
    return None


def _remember(table: dict, key, value) -> None:
    with _lock:
        table[key] = (_monotonic() + settings.FAIRWAY_DEK_CACHE_SECONDS, value)


def _unwrap_raw(row: DataKey) -> bytes:
    kek = keyring().get(row.kek_id)
    if kek is None:
        raise crypto.DecryptionError(f"data key v{row.version} is wrapped by KEK '{row.kek_id}', "
                                     "which FAIRWAY_KEKS does not contain")
    return crypto.dek_unwrap(kek=kek, wrapped=row.wrapped_key, tenant_id=row.tenant_id, version=row.version)


def _unwrap(row: DataKey) -> ActiveKey:
    return ActiveKey(dek_id=row.pk, tenant_id=row.tenant_id, version=row.version, cipher=AESGCM(_unwrap_raw(row)))


def datakey_get(*, dek_id: int) -> ActiveKey:
    key = _cached(_by_id, dek_id)
    if key is None:
        key = _unwrap(DataKey.objects.get(pk=dek_id))
        _remember(_by_id, dek_id, key)
    return key


def datakey_primary(*, tenant_id: UUID) -> ActiveKey:
    """The tenant's newest DEK version, created on first use."""
    dek_id = _cached(_primary, tenant_id)
    if dek_id is None:
        row = DataKey.objects.filter(tenant_id=tenant_id).order_by("-version").first()
        if row is None:
            row = datakey_create(tenant_id=tenant_id)
        dek_id = row.pk
        _remember(_primary, tenant_id, dek_id)
    return datakey_get(dek_id=dek_id)


def datakey_create(*, tenant_id: UUID) -> DataKey:
    """Add the next DEK version (it becomes the primary), wrapped by the primary KEK."""
    kek = keyring().primary
    for _ in range(5):  # two processes may race for the same version; the loser retries
        version = (DataKey.objects.filter(tenant_id=tenant_id).aggregate(v=Max("version"))["v"] or 0) + 1
        wrapped = crypto.dek_wrap(kek=kek, dek=crypto.dek_generate(), tenant_id=tenant_id, version=version)
        try:
            with transaction.atomic():
                row = DataKey.objects.create(tenant_id=tenant_id, version=version, kek_id=kek.id,
                                             wrapped_key=wrapped)
        except IntegrityError:
            existing = DataKey.objects.filter(tenant_id=tenant_id, version=version).first()
            if existing is not None and version == 1:
                return existing  # someone else created the first key: use it
            continue
        with _lock:
            _primary.pop(tenant_id, None)
        logger.info("data key created: tenant=%s version=%d kek=%s", tenant_id, version, kek.id)
        return row
    raise RuntimeError("could not allocate a data key version")


def kek_rewrap_all(*, batch_size: int = 500) -> dict[str, int]:
    """Re-wrap every DEK not under the primary KEK with it (no data re-encryption, no downtime).

    Each row is updated only if it still holds the blob we unwrapped, so concurrent runs are safe.
    Returns {old kek id: rows re-wrapped}.
    """
    primary = keyring().primary
    counts: dict[str, int] = {}
    last_pk = 0
    while True:
        rows = list(DataKey.objects.exclude(kek_id=primary.id).filter(pk__gt=last_pk).order_by("pk")[:batch_size])
        if not rows:
            return counts
        for row in rows:
            last_pk = row.pk
            raw = _unwrap_raw(row)  # raises if the old KEK is missing from the ring
            wrapped = crypto.dek_wrap(kek=primary, dek=raw, tenant_id=row.tenant_id, version=row.version)
            updated = DataKey.objects.filter(pk=row.pk, kek_id=row.kek_id).update(
                kek_id=primary.id, wrapped_key=wrapped, rewrapped_at=timezone.now())
            if updated:
                counts[row.kek_id] = counts.get(row.kek_id, 0) + 1


def kek_usage() -> dict[str, int]:
    """How many DEK versions each KEK id wraps (for status output and the startup check)."""
    from django.db.models import Count

    return dict(DataKey.objects.values_list("kek_id").annotate(n=Count("id")).values_list("kek_id", "n"))

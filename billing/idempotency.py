"""Idempotency keys (the `Idempotency-Key` header on POST), per tenant, kept 24 h.

A key is claimed by the first request (a row `in_progress` with a lock that the request's lease
renewals extend); a retry with the same key and body gets the stored result, or waits while the
first is still running; the same key with a different body is refused (400). Only completed
results are stored: a request that was refused, failed or cancelled releases its key, so a retry
runs again (the first attempt was billed only for what it delivered, if anything).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import IdempotencyKey


def idempotency_fingerprint(*, endpoint: str, body: dict) -> str:
    """Same request ⇔ same endpoint and same JSON (key order and whitespace do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claimed:
    key: str


@dataclass(frozen=True, slots=True)
class Completed:
    sealed: bytes
    request_id: str


@dataclass(frozen=True, slots=True)
class Busy:
    request_id: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    pass


def idempotency_claim(*, tenant_id: str, key: str, fingerprint: str, request_id: str, now: datetime,
                      lock_s: float) -> Claimed | Completed | Busy | Mismatch:
    """Claim `key` for `request_id`, or say who has it. Every transition is one conditional write."""
    lock = now + timedelta(seconds=lock_s)
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    tenant_id=tenant_id, key=key, fingerprint=fingerprint, request_id=request_id, locked_until=lock,
                    created_at=now, expires_at=now + timedelta(seconds=settings.FAIRWAY_IDEMPOTENCY_TTL_SECONDS))
            return Claimed(key=key)
        except IntegrityError:
            pass
        row = IdempotencyKey.objects.filter(tenant_id=tenant_id, key=key).first()
        if row is None:
            continue  # released meanwhile
        if row.expires_at <= now:  # older than 24 h: forget it, then claim afresh
            IdempotencyKey.objects.filter(pk=row.pk, expires_at__lte=now).delete()
            continue
        if row.fingerprint != fingerprint:
            return Mismatch()
        if row.state == IdempotencyKey.State.COMPLETED:
            return Completed(sealed=bytes(row.result), request_id=row.request_id)
        if row.locked_until > now:
            return Busy(request_id=row.request_id)
        # the owner died mid-request (its lock lapsed): take over, unless someone else just did
        if IdempotencyKey.objects.filter(pk=row.pk, state=IdempotencyKey.State.IN_PROGRESS,
                                         request_id=row.request_id, locked_until=row.locked_until).update(
                request_id=request_id, locked_until=lock):
            return Claimed(key=key)
    return Busy(request_id="")


def idempotency_purge(*, now: datetime) -> int:
    """Delete keys past their 24 h (run from `usage_reconcile`)."""
    return IdempotencyKey.objects.filter(expires_at__lte=now).delete()[0]

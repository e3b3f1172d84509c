"""Close usage records that a crashed (or hung) gateway left open, and release their holds.

A record is stale once its lease passed: its gateway stopped renewing it. It is finalised as
`error` (reason `gateway_lost`) and billed what its last lease checkpoint saw delivered, the same
rule as any failed request; then its quota hold is settled to that amount. Each record is closed
by one conditional UPDATE (`status = pending`), so a gateway that finishes it concurrently wins
cleanly and nothing is billed twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from billing.idempotency import idempotency_purge
from billing.metering import usage_cost
from billing.models import UsageRecord
from gateway.quotas import periods
from gateway.quotas.backends import get_backend
from gateway.quotas.types import Hold

logger = logging.getLogger("fairway.billing")


def usage_reconcile(*, now: datetime, grace_s: float = 0.0) -> int:
    """Finalise stale pending records; returns how many this call closed."""
    backend = get_backend()
    closed = 0
    stale = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING,
                                       lease_expires_at__lt=now - timedelta(seconds=grace_s))
    for record in stale.iterator():
        cost = usage_cost(prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
                          price_per_1k_input_tokens=record.price_per_1k_input_tokens,
                          price_per_1k_output_tokens=record.price_per_1k_output_tokens)
        if not UsageRecord.objects.filter(pk=record.pk, status=UsageRecord.Status.PENDING,
                                          prompt_tokens=record.prompt_tokens,
                                          completion_tokens=record.completion_tokens).update(
                status=UsageRecord.Status.ERROR, reason="gateway_lost", cost=cost, finalised_at=now,
                lease_expires_at=None):
            continue  # finished or checkpointed meanwhile: leave it to its gateway / the next run
        hold = Hold(request_id=record.request_id, tenant_id=str(record.tenant_id), tokens=record.reserved_tokens,
                    month=periods.month_id(record.created_at), minute=periods.minute_id(record.created_at))
        try:
            backend.settle_sync(hold=hold, spent=record.prompt_tokens + record.completion_tokens, now=now)
        except Exception as exc:  # noqa: BLE001 — the hold lapses with its lease anyway
            logger.warning("could not release the hold of %s: %s", record.request_id, type(exc).__name__)
        logger.info("reconciled usage record %s tenant=%s billed=%d+%d", record.request_id, record.tenant_id,
                    record.prompt_tokens, record.completion_tokens)
        closed += 1
    return closed


def billing_maintenance(*, now: datetime, grace_s: float = 0.0) -> tuple[int, int]:
    """Reconcile stale records and purge idempotency keys older than their 24 h."""
    return usage_reconcile(now=now, grace_s=grace_s), idempotency_purge(now=now)

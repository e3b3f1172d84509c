"""Metering rules and the batched writes behind them (run on the database thread, see writer.py).

What is billed: the gateway's own prompt count plus the completion tokens it delivered. A request
that ended without delivering anything (failed, or the client left first) is not billed at all; a
completed one is billed even when the model answered with zero tokens. Cost is computed from the
prices snapshotted on the record when it was opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction

from billing.models import COST_PLACES, IdempotencyKey, UsageRecord

_QUANTUM = Decimal(1).scaleb(-COST_PLACES)


def usage_cost(*, prompt_tokens: int, completion_tokens: int, price_per_1k_input_tokens: Decimal,
               price_per_1k_output_tokens: Decimal) -> Decimal:
    cost = (prompt_tokens * price_per_1k_input_tokens + completion_tokens * price_per_1k_output_tokens) / 1000
    return cost.quantize(_QUANTUM)  # exact: prices have 6 places, /1000 gives 9


def usage_billable(*, status: str, prompt_tokens: int, completion_tokens: int) -> tuple[int, int]:
    """(prompt, completion) tokens to bill for an outcome."""
    if status == UsageRecord.Status.OK or completion_tokens > 0:
        return prompt_tokens, completion_tokens
    return 0, 0


# --- operations the writer batches --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UsageOpen:
    """A request about to be forwarded (or, with `rejected`, one refused by a limit: final at once)."""

    request_id: str
    tenant_id: str
    api_key_id: str | None
    model: str
    endpoint: str
    stream: bool
    reserved_tokens: int
    price_per_1k_input_tokens: Decimal
    price_per_1k_output_tokens: Decimal
    created_at: datetime
    lease_expires_at: datetime | None
    rejected: str = ""  # the limit that refused it


@dataclass(frozen=True, slots=True)
class UsageFinal:
    request_id: str
    status: str
    reason: str
    prompt_tokens: int  # billable, see usage_billable
    completion_tokens: int
    ttft_s: float | None
    duration_s: float
    price_per_1k_input_tokens: Decimal
    price_per_1k_output_tokens: Decimal
    finalised_at: datetime
    opened: UsageOpen | None = None  # to recreate the row if its open was lost


@dataclass(frozen=True, slots=True)
class UsageCheckpoint:
    """Lease renewal of a pending record, with what it would bill if its gateway died now."""

    request_id: str
    prompt_tokens: int
    completion_tokens: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class IdempotencyDone:
    """Store the result (`sealed` set) or release the claim (`sealed` None) of an idempotent request."""

    tenant_id: str
    key: str
    request_id: str
    sealed: bytes | None
    at: datetime


@dataclass(frozen=True, slots=True)
class IdempotencyLock:
    """Extend an in-progress claim while its request runs (a crashed owner's claim then lapses)."""

    tenant_id: str
    key: str
    request_id: str
    until: datetime


def _record(op: UsageOpen) -> UsageRecord:
    status = UsageRecord.Status.REJECTED if op.rejected else UsageRecord.Status.PENDING
    return UsageRecord(request_id=op.request_id, tenant_id=op.tenant_id, api_key_id=op.api_key_id, model=op.model,
                       endpoint=op.endpoint, stream=op.stream, status=status, reason=op.rejected,
                       reserved_tokens=op.reserved_tokens, price_per_1k_input_tokens=op.price_per_1k_input_tokens,
                       price_per_1k_output_tokens=op.price_per_1k_output_tokens, created_at=op.created_at,
                       lease_expires_at=op.lease_expires_at, finalised_at=op.created_at if op.rejected else None)


def _final_values(op: UsageFinal) -> dict:
    cost = usage_cost(prompt_tokens=op.prompt_tokens, completion_tokens=op.completion_tokens,
                      price_per_1k_input_tokens=op.price_per_1k_input_tokens,
                      price_per_1k_output_tokens=op.price_per_1k_output_tokens)
    return dict(status=op.status, reason=op.reason, prompt_tokens=op.prompt_tokens,
                completion_tokens=op.completion_tokens, ttft_s=op.ttft_s, duration_s=op.duration_s, cost=cost,
                finalised_at=op.finalised_at, lease_expires_at=None)


def usage_write_batch(*, ops: list) -> None:
    """Apply a batch in one transaction: opens, then checkpoints, then finals, then idempotency results.

    Finals and checkpoints only touch records still `pending`, so a record the reconciler closed (or
    a duplicate final) is never billed twice. A final whose open row is missing (its asynchronous
    commit was lost in a database crash) is inserted whole.

    Durability: a batch holding a final or an idempotent result is committed synchronously (it is
    what the client is about to be told). Opens, rejections and checkpoints are needed only for crash
    recovery, so on PostgreSQL they commit without waiting for the WAL flush (one fsync less per
    request; a database crash can lose the last few hundred ms of them, which finals then recreate).
    FAIRWAY_USAGE_SYNC_COMMIT=0 makes finals asynchronous too (faster; a database crash, not a gateway
    crash, can then lose the last few hundred ms of billing).
    """
    opens = [_record(op) for op in ops if isinstance(op, UsageOpen)]
    checkpoints = {op.request_id: op for op in ops if isinstance(op, UsageCheckpoint)}
    final_ops = [op for op in ops if isinstance(op, UsageFinal)]
    for op in final_ops:
        checkpoints.pop(op.request_id, None)
    durable = settings.FAIRWAY_USAGE_SYNC_COMMIT and (
        bool(final_ops) or any(isinstance(op, IdempotencyDone) for op in ops))
    pending = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING)
    with transaction.atomic():
        if not durable and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        if opens:
            UsageRecord.objects.bulk_create(opens)
        # One plain UPDATE per row: Django's bulk_update builds CASE expressions whose compilation
        # costs ~10x a simple update, and batches here are small (what queued during one commit).
        for op in checkpoints.values():
            pending.filter(pk=op.request_id).update(prompt_tokens=op.prompt_tokens,
                                                    completion_tokens=op.completion_tokens,
                                                    lease_expires_at=op.lease_expires_at)
        lost = [op for op in final_ops if not pending.filter(pk=op.request_id).update(**_final_values(op))]
        if lost:
            _recreate_lost_opens(lost)
        for op in ops:
            if isinstance(op, IdempotencyDone):
                _idempotency_done(op)
            elif isinstance(op, IdempotencyLock):
                IdempotencyKey.objects.filter(tenant_id=op.tenant_id, key=op.key, request_id=op.request_id,
                                              state=IdempotencyKey.State.IN_PROGRESS).update(locked_until=op.until)


def _recreate_lost_opens(final_ops: list[UsageFinal]) -> None:
    """Finals that updated nothing: already final (fine), or their open row was lost (recreate it)."""
    ids = {op.request_id for op in final_ops}
    present = set(UsageRecord.objects.filter(pk__in=ids).values_list("pk", flat=True))
    lost = [op for op in final_ops if op.request_id not in present and op.opened is not None]
    records = []
    for op in lost:
        record = _record(op.opened)
        for name, value in _final_values(op).items():
            setattr(record, name, value)
        records.append(record)
    UsageRecord.objects.bulk_create(records)


def _idempotency_done(op: IdempotencyDone) -> None:
    claim = IdempotencyKey.objects.filter(tenant_id=op.tenant_id, key=op.key, request_id=op.request_id,
                                          state=IdempotencyKey.State.IN_PROGRESS)
    if op.sealed is None:
        claim.delete()  # not stored: a retry runs the request again (it was not billed, or billed only its part)
    else:
        claim.update(state=IdempotencyKey.State.COMPLETED, result=op.sealed, locked_until=op.at)

"""Reads over usage records. Keyword-only, no side effects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from billing.models import Invoice, UsageRecord
from gateway.quotas import periods

BILLED = (UsageRecord.Status.OK, UsageRecord.Status.CANCELLED, UsageRecord.Status.ERROR)


# --- quota state, rebuilt from the records (PostgreSQL is the source of truth) -------------------

@dataclass(frozen=True, slots=True)
class SnapshotHold:
    request_id: str
    tokens: int  # what the hold counts now: the reservation while live, what it spent once lapsed
    spent: int
    month: int
    minute: int
    lease_expires_at: datetime
    live: bool


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    month_used: int
    minute_used: int
    holds: list[SnapshotHold]


def quota_snapshot(*, tenant_id: str, now: datetime) -> QuotaSnapshot:
    """A tenant's month and minute counters as the usage records imply them: billed tokens of finished
    requests plus what pending ones hold (their reservation while their lease is live)."""
    month = periods.month_id(now)
    minute = periods.minute_id(now)
    minute_start = periods.minute_start(minute)
    records = UsageRecord.objects.filter(tenant_id=tenant_id, created_at__gte=periods.month_start(month),
                                         created_at__lt=periods.next_month_start(month))
    billed = F("prompt_tokens") + F("completion_tokens")
    done = records.exclude(status=UsageRecord.Status.PENDING).aggregate(
        month=Sum(billed), minute=Sum(billed, filter=Q(created_at__gte=minute_start)))
    holds = []
    month_used, minute_used = done["month"] or 0, done["minute"] or 0
    pending = records.filter(status=UsageRecord.Status.PENDING).values_list(
        "request_id", "reserved_tokens", "prompt_tokens", "completion_tokens", "created_at", "lease_expires_at")
    for request_id, reserved, prompt, completion, created_at, lease in pending:
        live = lease is not None and lease > now
        spent = prompt + completion
        hold = SnapshotHold(request_id=request_id, tokens=reserved if live else spent, spent=spent, month=month,
                            minute=periods.minute_id(created_at), lease_expires_at=lease or now, live=live)
        holds.append(hold)
        month_used += hold.tokens
        minute_used += hold.tokens if created_at >= minute_start else 0
    return QuotaSnapshot(month_used=month_used, minute_used=minute_used, holds=holds)


# --- usage reports --------------------------------------------------------------------------------

def usage_for_tenant(*, tenant_id, start: date, end: date, model: str | None = None) -> QuerySet[UsageRecord]:
    """Finalised records of one tenant created on days start..end (inclusive, UTC)."""
    since = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    until = datetime(end.year, end.month, end.day, tzinfo=timezone.utc) + timedelta(days=1)
    records = UsageRecord.objects.filter(tenant_id=tenant_id, created_at__gte=since, created_at__lt=until).exclude(
        status=UsageRecord.Status.PENDING)
    return records.filter(model=model) if model else records


def usage_by_day_and_model(*, tenant_id, start: date, end: date, model: str | None = None) -> list[dict]:
    rows = (usage_for_tenant(tenant_id=tenant_id, start=start, end=end, model=model)
            .annotate(day=TruncDate("created_at", tzinfo=timezone.utc)).values("day", "model")
            .annotate(requests=Count("request_id", filter=Q(status__in=BILLED)),
                      rejected_requests=Count("request_id", filter=Q(status=UsageRecord.Status.REJECTED)),
                      prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"),
                      cost=Sum("cost"))
            .order_by("day", "model"))
    return [{"date": row["day"].isoformat(), "model": row["model"], "requests": row["requests"],
             "rejected_requests": row["rejected_requests"], "prompt_tokens": row["prompt_tokens"] or 0,
             "completion_tokens": row["completion_tokens"] or 0,
             "total_tokens": (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0),
             "cost": money_str(row["cost"])} for row in rows]


def money_str(value) -> str:
    """A Decimal as plain text without exponent or trailing zeros ("0.00042", "0")."""
    value = Decimal(value or 0).quantize(Decimal(1).scaleb(-10))
    return format(value.normalize(), "f") if value else "0"


# --- invoices ---------------------------------------------------------------------------------------

def usage_lines_for_month(*, tenant_id, month: int) -> list[dict]:
    """Billed usage of a month grouped by model and price pair (the invoice lines), token sums exact."""
    return list(UsageRecord.objects.filter(
        tenant_id=tenant_id, status__in=BILLED, created_at__gte=periods.month_start(month),
        created_at__lt=periods.next_month_start(month))
        .values("model", "price_per_1k_input_tokens", "price_per_1k_output_tokens")
        .annotate(requests=Count("request_id"), input_tokens=Sum("prompt_tokens"),
                  output_tokens=Sum("completion_tokens"))
        .order_by("model", "price_per_1k_input_tokens", "price_per_1k_output_tokens"))


def usage_pending_count(*, tenant_id, month: int) -> int:
    return UsageRecord.objects.filter(tenant_id=tenant_id, status=UsageRecord.Status.PENDING,
                                      created_at__gte=periods.month_start(month),
                                      created_at__lt=periods.next_month_start(month)).count()


def invoice_get(*, tenant_id, month: int) -> Invoice | None:
    return (Invoice.objects.filter(tenant_id=tenant_id, period_start=periods.month_start(month).date())
            .select_related("tenant").prefetch_related("lines").first())

"""Reads behind the dashboard pages. Each function is a fixed number of aggregate queries, whatever
the number of tenants or records (no per-row queries); results are plain dicts ready for charts."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from uuid import UUID

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from billing.models import Invoice, UsageRecord
from tenants.models import Tenant
from tenants.principal import PlanLimits

UTC = dt_timezone.utc
BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
ERROR_STATUSES = (UsageRecord.Status.ERROR,)
REJECTED = UsageRecord.Status.REJECTED  # refused by a limit before forwarding: the API answered 429
OTHER = "other"


def _now() -> datetime:
    return timezone.now()


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def window(*, bucket: str, count: int, now: datetime | None = None) -> tuple[datetime, list[datetime]]:
    """The `count` most recent buckets (the current one last) and the start of the first."""
    last = _floor(now or _now(), bucket)
    starts = [last - BUCKETS[bucket] * i for i in range(count - 1, -1, -1)]
    return starts[0], starts


def month_start(*, now: datetime | None = None) -> datetime:
    return _floor(now or _now(), "day").replace(day=1)


def _records(since: datetime, tenant_id: UUID | None) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(created_at__gte=since)
    return records.filter(tenant_id=tenant_id) if tenant_id else records


def _label(moment: datetime, bucket: str) -> str:
    return moment.strftime("%H:00" if bucket == "hour" else "%b %d")


def usage_series(*, bucket: str, count: int, tenant_id: UUID | None = None, top: int = 6,
                 now: datetime | None = None) -> dict:
    """Requests, tokens and cost per bucket per tenant (the `top` by tokens; the rest as "other"),
    plus request outcomes per bucket. Two queries."""
    since, starts = window(bucket=bucket, count=count, now=now)
    index = {start: i for i, start in enumerate(starts)}
    rows = (_records(since, tenant_id).annotate(at=Trunc("created_at", bucket, tzinfo=UTC))
            .values("at", "tenant__slug").order_by()
            .annotate(requests=Count("pk"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
                      cost=Sum("cost")))
    rows = list(rows)
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["tenant__slug"]] = totals.get(row["tenant__slug"], 0) + (row["tokens"] or 0)
    leaders = sorted(totals, key=lambda slug: (-totals[slug], slug))[:top]
    names = leaders + ([OTHER] if len(totals) > len(leaders) else [])
    metrics = {m: {name: [0] * count for name in names} for m in ("requests", "tokens", "cost")}
    for row in rows:
        slot = index.get(_floor(row["at"], bucket))
        if slot is None:
            continue
        name = row["tenant__slug"] if row["tenant__slug"] in leaders else OTHER
        metrics["requests"][name][slot] += row["requests"]
        metrics["tokens"][name][slot] += row["tokens"] or 0
        metrics["cost"][name][slot] += float(row["cost"] or 0)
    outcomes = {status: [0] * count for status in UsageRecord.Status.values}
    for row in (_records(since, tenant_id).annotate(at=Trunc("created_at", bucket, tzinfo=UTC))
                .values("at", "status").order_by().annotate(n=Count("pk"))):
        slot = index.get(_floor(row["at"], bucket))
        if slot is not None and row["status"] in outcomes:
            outcomes[row["status"]][slot] += row["n"]
    return {"labels": [_label(s, bucket) for s in starts], "tenants": names, **metrics, "outcomes": outcomes}


def tenant_usage_table(*, since: datetime, limit: int = 10) -> list[dict]:
    """Top tenants since `since` by tokens, with error and 429 (limit-rejected) rates. One query."""
    rows = (UsageRecord.objects.filter(created_at__gte=since).values("tenant__slug", "tenant__name").order_by()
            .annotate(requests=Count("pk"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
                      cost=Sum("cost"), errors=Count("pk", filter=Q(status__in=ERROR_STATUSES)),
                      rejected=Count("pk", filter=Q(status=REJECTED)))
            .order_by("-tokens", "tenant__slug")[:limit])
    return [{"slug": r["tenant__slug"], "name": r["tenant__name"], "requests": r["requests"],
             "tokens": r["tokens"] or 0, "cost": r["cost"] or Decimal(0),
             "error_rate": _rate(r["errors"], r["requests"]), "rejected_rate": _rate(r["rejected"], r["requests"])}
            for r in rows]


def usage_totals(*, since: datetime, tenant_id: UUID | None = None) -> dict:
    """Whole-service (or one tenant's) totals and rates since `since`. One query."""
    totals = _records(since, tenant_id).aggregate(
        requests=Count("pk"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost"),
        errors=Count("pk", filter=Q(status__in=ERROR_STATUSES)), rejected=Count("pk", filter=Q(status=REJECTED)))
    return {"requests": totals["requests"], "tokens": totals["tokens"] or 0, "cost": totals["cost"] or Decimal(0),
            "errors": totals["errors"], "rejected": totals["rejected"],
            "error_rate": _rate(totals["errors"], totals["requests"]),
            "rejected_rate": _rate(totals["rejected"], totals["requests"])}


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def tenant_month_spend(*, now: datetime | None = None) -> list[dict]:
    """Every tenant's spend and tokens this calendar month (UTC), biggest first. One query."""
    since = month_start(now=now)
    this_month = Q(usage_records__created_at__gte=since)
    tenants = (Tenant.objects.select_related("plan")
               .annotate(spend=Sum("usage_records__cost", filter=this_month),
                         tokens=Sum(F("usage_records__prompt_tokens") + F("usage_records__completion_tokens"),
                                    filter=this_month))
               .order_by(F("spend").desc(nulls_last=True), "slug"))
    result = []
    for tenant in tenants:
        budget = tenant.monthly_token_budget_override or tenant.plan.monthly_token_budget
        tokens = tenant.tokens or 0
        result.append({"slug": tenant.slug, "name": tenant.name, "status": tenant.status, "plan": tenant.plan.name,
                       "spend": tenant.spend or Decimal(0), "tokens": tokens, "budget": budget,
                       "budget_used": _rate(tokens, budget)})
    return result


def tenant_limits(*, tenant: Tenant) -> PlanLimits:
    """The limits the gateway enforces for this tenant: its plan with its overrides."""
    return PlanLimits.from_plan(tenant.plan, tenant.limit_overrides())


def tenant_recent_errors(*, tenant: Tenant, limit: int = 20) -> QuerySet[UsageRecord]:
    return (UsageRecord.objects.filter(tenant=tenant, status__in=(*ERROR_STATUSES, REJECTED))
            .select_related("api_key").order_by("-created_at")[:limit])


def tenant_invoices(*, tenant: Tenant, limit: int = 24) -> QuerySet[Invoice]:
    return Invoice.objects.filter(tenant=tenant).order_by("-period_start")[:limit]


USAGE_CSV_COLUMNS = {"created_at": "created_at", "request_id": "request_id", "key_id": "api_key__key_id",
                     "model": "model", "endpoint": "endpoint", "stream": "stream", "status": "status",
                     "reason": "reason", "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens",
                     "cost": "cost", "ttft_s": "ttft_s", "duration_s": "duration_s"}


def tenant_usage_rows(*, tenant: Tenant, since: datetime, until: datetime) -> QuerySet:
    """Usage records for the CSV export, as dicts of USAGE_CSV_COLUMNS' fields (metadata only: no
    content ever lives on a record). `.values()`, not `.values_list()`: only the former is lazy
    enough for `aiterator()` in Django 5.2."""
    return (UsageRecord.objects.filter(tenant=tenant, created_at__gte=since, created_at__lt=until)
            .order_by("created_at", "request_id").values(*USAGE_CSV_COLUMNS.values()))

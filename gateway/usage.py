"""GET /v1/usage: the calling tenant's own usage by day and model (API key with the `usage` scope).

Query: start_date, end_date (YYYY-MM-DD, inclusive, UTC; default: this month so far), model.
The tenant comes only from the key, never from the query, so no tenant can read another's usage.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.http import JsonResponse

from billing import selectors
from config import dbthread
from tenants.authentication import aauthenticate_request, require_scope

from .errors import invalid_request
from .quotas import periods
from .views import openai_endpoint


def _date(request, name: str, default: date) -> date:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid_request(f"'{name}' must be a date in the form YYYY-MM-DD.", param=name) from None


@openai_endpoint("GET")
async def usage(request):
    principal = await aauthenticate_request(request)
    require_scope(principal, "usage")
    today = periods.now().date()
    start = _date(request, "start_date", today.replace(day=1))
    end = _date(request, "end_date", today)
    if end < start:
        raise invalid_request("'end_date' must not be before 'start_date'.", param="end_date")
    if end - start >= timedelta(days=settings.FAIRWAY_USAGE_MAX_DAYS):
        raise invalid_request(f"The date range may span at most {settings.FAIRWAY_USAGE_MAX_DAYS} days.",
                              param="start_date")
    model = request.GET.get("model") or None
    rows = await dbthread.run(selectors.usage_by_day_and_model, tenant_id=principal.tenant_id, start=start, end=end,
                              model=model)
    totals = {name: sum(row[name] for row in rows) for name in
              ("requests", "rejected_requests", "prompt_tokens", "completion_tokens", "total_tokens")}
    totals["cost"] = selectors.money_str(sum((Decimal(row["cost"]) for row in rows), Decimal(0)))
    return JsonResponse({"object": "list", "tenant": principal.tenant_slug, "start_date": start.isoformat(),
                         "end_date": end.isoformat(), "currency": settings.FAIRWAY_BILLING_CURRENCY,
                         "data": rows, "totals": totals})

"""Dashboard pages: thin views over dashboard/selectors.py. Staff only (see access.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.selectors import audit_list_for_tenant
from tenants import selectors as tenant_selectors
from tenants.models import Tenant

from . import exports, selectors
from .access import staff_required
from .live import LIVE_SOCKET_PATH


def _charts(tenant_id=None, top: int = 6) -> dict:
    return {"hourly": selectors.usage_series(bucket="hour", count=24, tenant_id=tenant_id, top=top),
            "daily": selectors.usage_series(bucket="day", count=30, tenant_id=tenant_id, top=top)}


@require_GET
@staff_required
def overview(request):
    day_ago = timezone.now() - timedelta(hours=24)
    return render(request, "dashboard/overview.html", {
        "page": "overview", "charts": _charts(), "totals": selectors.usage_totals(since=day_ago),
        "top_tenants": selectors.tenant_usage_table(since=day_ago),
        "month_spend": selectors.tenant_month_spend(), "month": selectors.month_start()})


@require_GET
@staff_required
def live(request):
    return render(request, "dashboard/live.html", {"page": "live", "ws_path": LIVE_SOCKET_PATH,
                                                   "interval": settings.FAIRWAY_DASHBOARD_LIVE_INTERVAL})


@require_GET
@staff_required
def tenant_detail(request, slug: str):
    tenant = get_object_or_404(Tenant.objects.select_related("plan"), slug=slug)
    month = selectors.month_start()
    return render(request, "dashboard/tenant_detail.html", {
        "page": "tenants", "tenant": tenant, "charts": _charts(tenant.pk, top=1),
        "limits": selectors.tenant_limits(tenant=tenant),
        "month_totals": selectors.usage_totals(since=month, tenant_id=tenant.pk), "month": month,
        "keys": tenant_selectors.apikey_list_for_tenant(tenant=tenant), "now": timezone.now(),
        "errors": selectors.tenant_recent_errors(tenant=tenant),
        "invoices": exports.invoice_rows(selectors.tenant_invoices(tenant=tenant)),
        "exports": exports.export_links(tenant=tenant),
        "audit": audit_list_for_tenant(tenant_id=tenant.pk, limit=15)})


@require_GET
@staff_required
def tenant_usage_csv(request, slug: str):
    """This month's (or ?month=YYYY-MM) usage records as CSV, streamed (metadata only: no content exists)."""
    tenant = get_object_or_404(Tenant, slug=slug)
    try:
        since = (datetime.strptime(request.GET["month"], "%Y-%m").replace(tzinfo=selectors.UTC)
                 if "month" in request.GET else selectors.month_start())
    except ValueError:
        raise Http404("month must look like 2030-01")
    until = (since + timedelta(days=32)).replace(day=1)
    rows = selectors.tenant_usage_rows(tenant=tenant, since=since, until=until)
    response = StreamingHttpResponse(exports.csv_lines(rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{tenant.slug}-usage-{since:%Y-%m}.csv"'
    return response

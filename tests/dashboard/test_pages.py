"""Overview and tenant pages show the seeded usage, with a fixed number of queries."""

import asyncio
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import selectors
from tenants import services

from .conftest import hours_ago, seed_usage

pytestmark = pytest.mark.django_db


def _usage_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="usage-data" type="application/json">') + len(
        '<script id="usage-data" type="application/json">')
    return json.loads(html[start:html.index("</script>", start)])


def test_overview_charts_and_tables(op_client, acme, globex, acme_key):
    seed_usage(acme, at=hours_ago(0.01), count=3, api_key=acme_key.api_key)
    seed_usage(acme, at=hours_ago(0.01), status="rejected", reason="rpm", prompt=0, completion=0, cost="0")
    seed_usage(globex, at=hours_ago(0.01), status="error", reason="upstream_error", cost="0.002")
    seed_usage(globex, at=hours_ago(5), count=2)
    seed_usage(globex, at=hours_ago(24 * 3), count=4)  # only in the 30-day chart
    response = op_client.get("/dashboard/")
    data = _usage_data(response)
    hourly, daily = data["hourly"], data["daily"]
    assert len(hourly["labels"]) == 24 and len(daily["labels"]) == 30
    assert sum(hourly["requests"]["acme"]) == 4 and sum(hourly["requests"]["globex"]) == 3
    assert hourly["requests"]["acme"][-1] == 4  # the current hour is the last bar
    assert sum(daily["requests"]["globex"]) == 7
    assert sum(hourly["outcomes"]["rejected"]) == 1 and sum(hourly["outcomes"]["error"]) == 1
    totals = response.context["totals"]
    assert totals["requests"] == 7 and totals["error_rate"] == round(100 / 7, 2)
    assert totals["rejected_rate"] == round(100 / 7, 2)
    top = {row["slug"]: row for row in response.context["top_tenants"]}
    assert top["acme"]["rejected_rate"] == 25.0 and top["globex"]["error_rate"] == round(100 / 3, 2)
    spend = {row["slug"]: row for row in response.context["month_spend"]}
    assert spend["acme"]["tokens"] == 3 * 150  # the rejected request carried no tokens
    html = response.content.decode()
    assert 'id="chart-hourly-requests"' in html and "vendor/chart.umd.min.js" in html


def test_series_groups_small_tenants_as_other(plan):
    for i in range(4):
        tenant = services.tenant_create(name=f"T{i}", slug=f"t{i}", plan=plan)
        seed_usage(tenant, at=hours_ago(0.01), count=1, completion=10 * (i + 1))
    series = selectors.usage_series(bucket="hour", count=24, top=2)
    assert series["tenants"] == ["t3", "t2", "other"]
    assert sum(series["tokens"]["other"]) == (100 + 10) + (100 + 20)


def test_overview_query_count_does_not_grow_with_tenants(op_client, plan, django_assert_max_num_queries):
    def page_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert op_client.get("/dashboard/").status_code == 200
        return len(captured)

    tenant = services.tenant_create(name="first", slug="first", plan=plan)
    seed_usage(tenant, at=hours_ago(1), count=2)
    few = page_queries()
    for i in range(12):
        tenant = services.tenant_create(name=f"T{i}", slug=f"many-{i}", plan=plan)
        seed_usage(tenant, at=hours_ago(i), count=2)
    assert page_queries() == few
    with django_assert_max_num_queries(12):
        op_client.get("/dashboard/")


def test_tenant_page(op_client, acme, acme_key, django_assert_max_num_queries):
    from billing.models import Invoice

    services.apikey_create(tenant=acme, name="ci")
    services.apikey_revoke(api_key=acme_key.api_key)
    acme_key.api_key.__class__.objects.filter(pk=acme_key.api_key.pk).update(last_used_at=hours_ago(2))
    seed_usage(acme, at=hours_ago(0.01), count=2, api_key=acme_key.api_key)
    seed_usage(acme, at=hours_ago(0.02), status="error", reason="upstream_error", api_key=acme_key.api_key)
    Invoice.objects.create(tenant=acme, period_start=timezone.now().date().replace(day=1), number="INV-ACME-1",
                           requests=3, amount_due="1.23")
    services.tenant_change_weight(tenant=acme, weight="3.5")
    with django_assert_max_num_queries(14):
        response = op_client.get("/dashboard/tenants/acme/")
    html = response.content.decode()
    assert acme_key.api_key.display in html and "revoked" in html and "ci" in html
    assert "upstream_error" in html and "INV-ACME-1" in html
    assert response.context["limits"].weight == 3.5
    assert acme_key.api_key.secret_hash not in html and acme_key.plaintext not in html
    assert "tenant.change_weight" in html  # the tenant's operator actions
    assert "/dashboard/tenants/acme/usage.csv" in html
    invoice = Invoice.objects.get(number="INV-ACME-1")
    assert f"/admin/billing/invoice/{invoice.pk}/download.pdf" in html


def test_tenant_page_for_unknown_slug_is_404(op_client, db):
    assert op_client.get("/dashboard/tenants/nobody/").status_code == 404


@pytest.mark.django_db(transaction=True)  # fetched through the ASGI handler, in another thread
def test_usage_csv_streams_this_or_another_month(operator, acme, acme_key, executor_db_released):
    from django.test import AsyncClient

    async def fetch(url: str):
        client = AsyncClient()
        await client.aforce_login(operator)
        response = await client.get(url)
        body = b"".join([chunk async for chunk in response.streaming_content]) if response.streaming else b""
        return response, body.decode()

    seed_usage(acme, at=hours_ago(0.01), count=2, api_key=acme_key.api_key)
    response, body = asyncio.run(fetch("/dashboard/tenants/acme/usage.csv"))
    assert response["Content-Type"] == "text/csv" and 'filename="acme-usage-' in response["Content-Disposition"]
    lines = body.splitlines()
    assert lines[0].startswith("created_at,request_id,key_id") and len(lines) == 3
    assert acme_key.api_key.key_id in lines[1]
    assert asyncio.run(fetch("/dashboard/tenants/acme/usage.csv?month=nope"))[0].status_code == 404
    last_year = (timezone.now() - timedelta(days=400)).strftime("%Y-%m")
    assert len(asyncio.run(fetch(f"/dashboard/tenants/acme/usage.csv?month={last_year}"))[1].splitlines()) == 1


def test_pages_render_at_phone_width_markup(op_client, acme):
    html = op_client.get("/dashboard/").content.decode()
    assert 'name="viewport"' in html and "dashboard.css" in html

"""Monthly invoices: totals equal the records, prices are snapshots, months are UTC, re-runs are idempotent."""

from datetime import datetime, timezone
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from billing.models import Invoice, UsageRecord
from tests.support.billing_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def january(make_key, add_record):
    """A tenant's January: two models, a mid-month price change, and records that must not count."""
    key = make_key().api_key
    add_record(key, utc(2029, 12, 31, 23, 59, 59), prompt=999, completion=999)  # December
    add_record(key, utc(2030, 1, 1, 0, 0, 0), model="m1", prompt=100, completion=50)
    add_record(key, utc(2030, 1, 10), model="m1", prompt=300, completion=70, status="cancelled")
    add_record(key, utc(2030, 1, 12), model="m2", prompt=40, completion=0, status="error")  # nothing delivered
    add_record(key, utc(2030, 1, 12), model="m2", prompt=40, completion=3, status="error")
    add_record(key, utc(2030, 1, 20), model="m1", prompt=10, completion=20, price_in="0.80", price_out="2.00")
    add_record(key, utc(2030, 1, 21), model="m1", prompt=5, completion=5, status="rejected")
    add_record(key, utc(2030, 1, 31, 23, 59, 59), model="m2", prompt=1, completion=1)
    add_record(key, utc(2030, 2, 1, 0, 0, 0), model="m1", prompt=777, completion=777)  # February
    return key.tenant


def test_invoice_totals_equal_the_sum_of_records(january):
    from billing.invoices import invoice_generate

    invoice = invoice_generate(tenant=january, month=203001)
    records = UsageRecord.objects.filter(tenant=january, created_at__gte=utc(2030, 1, 1),
                                         created_at__lt=utc(2030, 2, 1)).exclude(status="rejected")
    assert invoice.amount == sum((r.cost for r in records), Decimal(0))
    assert invoice.input_tokens == sum(r.prompt_tokens for r in records) == 100 + 300 + 40 + 10 + 1
    assert invoice.output_tokens == sum(r.completion_tokens for r in records) == 50 + 70 + 3 + 20 + 1
    assert invoice.amount_due == invoice.amount.quantize(Decimal("0.01"))
    lines = [(l.model, l.price_per_1k_input_tokens, l.input_tokens, l.output_tokens, l.requests)
             for l in invoice.lines.all()]
    assert lines == [("m1", Decimal("0.5"), 400, 120, 2), ("m1", Decimal("0.8"), 10, 20, 1),
                     ("m2", Decimal("0.5"), 41, 4, 3)]
    assert sum(l.amount for l in invoice.lines.all()) == invoice.amount
    assert invoice.number == f"FW-203001-{january.slug}" and invoice.open_records == 0


def test_regenerating_is_idempotent_and_picks_up_late_records(january, add_record):
    from billing.invoices import invoice_generate

    first = invoice_generate(tenant=january, month=203001)
    again = invoice_generate(tenant=january, month=203001)
    assert (again.pk, again.amount, again.lines.count()) == (first.pk, first.amount, first.lines.count())
    add_record(january.api_keys.first(), utc(2030, 1, 5), model="m3", prompt=1000, completion=0)
    third = invoice_generate(tenant=january, month=203001)
    assert third.pk == first.pk and third.amount == first.amount + Decimal("0.5")
    assert Invoice.objects.count() == 1


def test_commands_generate_and_export_csv_and_pdf(january, tmp_path):
    out = StringIO()
    call_command("invoice_generate", "--month", "2030-01", stdout=out)
    call_command("invoice_generate", "--month", "2030-01", stdout=StringIO())  # re-run: same invoice
    assert f"FW-203001-{january.slug}" in out.getvalue() and Invoice.objects.count() == 1
    csv_out = StringIO()
    import sys

    real_stdout, sys.stdout = sys.stdout, csv_out
    try:
        call_command("invoice_export", january.slug, "--month", "2030-01")
    finally:
        sys.stdout = real_stdout
    rows = csv_out.getvalue().splitlines()
    assert rows[0].startswith("invoice,tenant,period") and len(rows) == 1 + 3 + 2
    assert rows[-1].endswith(str(Invoice.objects.get().amount_due))
    pdf = tmp_path / "invoice.pdf"
    call_command("invoice_export", january.slug, "--month", "2030-01", "--format", "pdf", "--output", str(pdf),
                 stderr=StringIO())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    assert f"FW-203001-{january.slug}".encode() in data and b"startxref" in data


def test_price_change_does_not_rewrite_old_records(gateway, make_key, clock):
    """Through the gateway, across a month boundary: each record keeps the price it was served at."""
    from billing.invoices import invoice_generate
    from tenants import services

    issued = make_key()
    clock.set(utc(2030, 1, 31, 23, 59, 30))
    assert post(gateway, issued.plaintext).status_code == 200
    services.plan_update(plan=issued.api_key.tenant.plan, price_per_1k_input_tokens="5.00",
                         price_per_1k_output_tokens="10.00")
    clock.set(utc(2030, 2, 1, 0, 0, 30))
    assert post(gateway, issued.plaintext).status_code == 200
    jan, feb = (UsageRecord.objects.get(tenant=issued.api_key.tenant, created_at__month=m) for m in (1, 2))
    assert (jan.price_per_1k_input_tokens, feb.price_per_1k_input_tokens) == (Decimal("0.5"), Decimal("5"))
    prompt = prompt_tokens()
    assert jan.cost == (prompt * Decimal("0.5") + 4 * Decimal("1.5")) / 1000
    tenant = issued.api_key.tenant
    assert invoice_generate(tenant=tenant, month=203001).amount == jan.cost
    assert invoice_generate(tenant=tenant, month=203002).amount == feb.cost


def test_admin_shows_invoices_and_records_and_downloads(january, client, django_user_model):
    from billing.invoices import invoice_generate

    invoice = invoice_generate(tenant=january, month=203001)
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-long-enough-123")
    client.force_login(admin)
    assert client.get("/admin/billing/usagerecord/").status_code == 200
    assert client.get("/admin/billing/invoice/").status_code == 200
    assert client.get(f"/admin/billing/invoice/{invoice.pk}/change/").status_code == 200
    csv_response = client.get(f"/admin/billing/invoice/{invoice.pk}/download.csv")
    assert csv_response.status_code == 200 and csv_response["Content-Type"] == "text/csv"
    pdf_response = client.get(f"/admin/billing/invoice/{invoice.pk}/download.pdf")
    assert pdf_response.content.startswith(b"%PDF")

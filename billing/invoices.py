"""Monthly invoices: generated from usage records (idempotent per tenant and month), exported as
CSV and PDF. Amounts are exact sums of the records' prices (no per-record rounding); the amount
due is rounded once, to cents."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import selectors
from billing.metering import usage_cost
from billing.models import Invoice, InvoiceLine
from billing.pdf import text_pdf
from gateway.quotas import periods

CENT = Decimal("0.01")


def invoice_number(*, tenant, month: int) -> str:
    return f"FW-{month}-{tenant.slug}"


def invoice_generate(*, tenant, month: int, now: datetime | None = None) -> Invoice:
    """Create or rebuild `tenant`'s invoice for `month` (YYYYMM) from its billed usage records."""
    groups = selectors.usage_lines_for_month(tenant_id=tenant.pk, month=month)
    lines = []
    for group in groups:
        price_in, price_out = group["price_per_1k_input_tokens"], group["price_per_1k_output_tokens"]
        input_tokens, output_tokens = group["input_tokens"] or 0, group["output_tokens"] or 0
        input_amount = usage_cost(prompt_tokens=input_tokens, completion_tokens=0, price_per_1k_input_tokens=price_in,
                                  price_per_1k_output_tokens=price_out)
        output_amount = usage_cost(prompt_tokens=0, completion_tokens=output_tokens,
                                   price_per_1k_input_tokens=price_in, price_per_1k_output_tokens=price_out)
        lines.append(InvoiceLine(model=group["model"], requests=group["requests"], input_tokens=input_tokens,
                                 output_tokens=output_tokens, price_per_1k_input_tokens=price_in,
                                 price_per_1k_output_tokens=price_out, input_amount=input_amount,
                                 output_amount=output_amount, amount=input_amount + output_amount))
    amount = sum((line.amount for line in lines), Decimal(0))
    values = dict(number=invoice_number(tenant=tenant, month=month), currency=settings.FAIRWAY_BILLING_CURRENCY,
                  requests=sum(line.requests for line in lines), input_tokens=sum(line.input_tokens for line in lines),
                  output_tokens=sum(line.output_tokens for line in lines), amount=amount,
                  amount_due=amount.quantize(CENT, rounding=ROUND_HALF_UP),
                  open_records=selectors.usage_pending_count(tenant_id=tenant.pk, month=month),
                  generated_at=now or timezone.now())
    period_start = periods.month_start(month).date()
    for _ in range(2):  # a concurrent generator may create the row between our read and insert
        try:
            with transaction.atomic():
                invoice, _ = Invoice.objects.select_for_update().update_or_create(
                    tenant=tenant, period_start=period_start, defaults=values)
                invoice.lines.all().delete()
                for line in lines:
                    line.invoice = invoice
                InvoiceLine.objects.bulk_create(lines)
                return invoice
        except IntegrityError:
            continue
    raise RuntimeError(f"could not generate invoice {values['number']}")


def invoice_csv(*, invoice: Invoice) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["invoice", "tenant", "period", "currency", "model", "requests", "input_tokens",
                     "price_per_1k_input_tokens", "input_amount", "output_tokens", "price_per_1k_output_tokens",
                     "output_amount", "amount"])
    head = [invoice.number, invoice.tenant.slug, invoice.period_start.strftime("%Y-%m"), invoice.currency]
    for line in invoice.lines.all():
        writer.writerow(head + [line.model, line.requests, line.input_tokens, line.price_per_1k_input_tokens,
                                line.input_amount, line.output_tokens, line.price_per_1k_output_tokens,
                                line.output_amount, line.amount])
    writer.writerow(head + ["TOTAL", invoice.requests, invoice.input_tokens, "", "", invoice.output_tokens, "", "",
                            invoice.amount])
    writer.writerow(head + ["AMOUNT DUE", "", "", "", "", "", "", "", invoice.amount_due])
    return out.getvalue()


def _money(value: Decimal, places: int = 6) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"


def invoice_pdf(*, invoice: Invoice) -> bytes:
    tenant = invoice.tenant
    lines = [f"INVOICE {invoice.number}", "",
             f"Customer:   {tenant.name} ({tenant.slug})",
             f"Period:     {invoice.period_start.strftime('%B %Y')} (UTC)",
             f"Generated:  {invoice.generated_at:%Y-%m-%d %H:%M} UTC",
             f"Currency:   {invoice.currency}", "",
             f"{'Model / item':<34}{'Tokens':>14}{'Per 1k':>12}{'Amount':>16}", "-" * 76]
    for line in invoice.lines.all():
        lines.append(f"{line.model[:34]:<34}  ({line.requests} requests)")
        lines.append(f"{'  input':<34}{line.input_tokens:>14,}{_money(line.price_per_1k_input_tokens):>12}"
                     f"{_money(line.input_amount):>16}")
        lines.append(f"{'  output':<34}{line.output_tokens:>14,}{_money(line.price_per_1k_output_tokens):>12}"
                     f"{_money(line.output_amount):>16}")
    lines += ["-" * 76, f"{'Total':<60}{_money(invoice.amount):>16}",
              f"{'Amount due':<60}{_money(invoice.amount_due, 2):>16}"]
    if invoice.open_records:
        lines += ["", f"Note: {invoice.open_records} request(s) were still open when this invoice was generated."]
    return text_pdf(lines, title=f"Invoice {invoice.number}")

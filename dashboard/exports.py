"""Tenant exports: our usage CSV, and links to billing's invoice downloads (CSV, PDF)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse

from .selectors import USAGE_CSV_COLUMNS


def _line(values) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["" if value is None else value for value in values])
    return buffer.getvalue()


async def csv_lines(rows: QuerySet) -> AsyncIterator[str]:
    """Streamed under ASGI: rows are fetched in chunks while the response is sent, so a busy tenant's
    month never sits in memory whole (a sync iterator would be buffered by Django's ASGI handler)."""
    yield _line(USAGE_CSV_COLUMNS)
    async for row in rows.aiterator(chunk_size=2000):
        yield _line(row[field] for field in USAGE_CSV_COLUMNS.values())


def export_links(*, tenant) -> list[dict]:
    return [{"label": "Usage this month (CSV)", "url": reverse("dashboard:tenant_usage_csv", args=[tenant.slug])}]


def invoice_rows(invoices) -> list[dict]:
    """Each invoice with billing's CSV and PDF downloads (its admin view), when billing provides them."""
    rows = []
    for invoice in invoices:
        try:
            links = {fmt: reverse("admin:billing_invoice_download", args=[invoice.pk, fmt]) for fmt in ("csv", "pdf")}
        except NoReverseMatch:
            links = {}
        rows.append({"invoice": invoice, **links})
    return rows

"""Tenant exports: links to billing's invoice exports when that app provides them, and a usage CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from django.urls import NoReverseMatch, reverse

CSV_HEADER = ("created_at", "request_id", "key_id", "model", "endpoint", "stream", "status", "reason",
              "prompt_tokens", "completion_tokens", "cost", "ttft_s", "duration_s")


def csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in ((CSV_HEADER,), rows):
        for values in row:
            writer.writerow(["" if value is None else value for value in values])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()


def export_links(*, tenant) -> list[dict]:
    """Our usage CSV, plus billing's exports if its URLs exist (names tried, never required)."""
    links = [{"label": "Usage this month (CSV)", "url": reverse("dashboard:tenant_usage_csv", args=[tenant.slug])}]
    for name, label in (("billing:tenant_invoices_csv", "Invoices (CSV)"),
                        ("billing:tenant_invoices_pdf", "Invoices (PDF)")):
        try:
            links.append({"label": label, "url": reverse(name, args=[tenant.slug])})
        except NoReverseMatch:
            pass
    return links

import sys

from django.core.management.base import BaseCommand, CommandError

from billing import selectors
from billing.invoices import invoice_csv, invoice_pdf
from tenants.management.commands._common import tenant_by_slug

from ._months import parse_month


class Command(BaseCommand):
    help = "Export one generated invoice as CSV (default: to stdout) or PDF (--output required)."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("--month", help="YYYY-MM (default: the previous month, UTC)")
        parser.add_argument("--format", choices=["csv", "pdf"], default="csv")
        parser.add_argument("--output", help="file to write (default for CSV: stdout)")

    def handle(self, *args, tenant, month, format, output, **opts):
        tenant = tenant_by_slug(tenant)
        invoice = selectors.invoice_get(tenant_id=tenant.pk, month=parse_month(month))
        if invoice is None:
            raise CommandError("No invoice for that tenant and month; run `invoice_generate` first.")
        data = invoice_csv(invoice=invoice).encode() if format == "csv" else invoice_pdf(invoice=invoice)
        if output:
            with open(output, "wb") as handle:
                handle.write(data)
            self.stderr.write(f"wrote {output} ({len(data)} bytes)")
        elif format == "pdf":
            raise CommandError("Give --output for a PDF.")
        else:
            sys.stdout.write(data.decode())

from django.core.management.base import BaseCommand
from django.db.models import Q

from billing.invoices import invoice_generate
from billing.models import Invoice, UsageRecord
from gateway.quotas import periods
from tenants.management.commands._common import tenant_by_slug
from tenants.models import Tenant

from ._months import parse_month


class Command(BaseCommand):
    help = ("Generate (or regenerate, idempotently) the monthly invoices: one per tenant with usage in the "
            "month, line items per model and price. Run `usage_reconcile` first so no record is still open.")

    def add_arguments(self, parser):
        parser.add_argument("--month", help="YYYY-MM (default: the previous month, UTC)")
        parser.add_argument("--tenant", help="only this tenant (slug)")

    def handle(self, *args, month, tenant, **opts):
        month = parse_month(month)
        if tenant:
            tenants = [tenant_by_slug(tenant)]
        else:
            start, end = periods.month_start(month), periods.next_month_start(month)
            with_usage = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end).values("tenant_id")
            invoiced = Invoice.objects.filter(period_start=start.date()).values("tenant_id")
            tenants = Tenant.objects.filter(Q(pk__in=with_usage) | Q(pk__in=invoiced)).order_by("slug")
        for each in tenants:
            invoice = invoice_generate(tenant=each, month=month)
            note = f" ({invoice.open_records} still open!)" if invoice.open_records else ""
            self.stdout.write(f"{invoice.number}: {invoice.requests} requests, {invoice.input_tokens} in + "
                              f"{invoice.output_tokens} out tokens, {invoice.amount_due} {invoice.currency}{note}")

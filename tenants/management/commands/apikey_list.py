from django.core.management.base import BaseCommand
from django.utils import timezone

from tenants import selectors
from tenants.management.commands._common import tenant_by_slug


class Command(BaseCommand):
    help = "List a tenant's API keys (public id, name, last 4, status, last use). Never shows secrets."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")

    def handle(self, *args, **opts):
        tenant = tenant_by_slug(opts["tenant"])
        now = timezone.now()
        row = "{:<14} {:<24} {:<6} {:<8} {:<26} {}"
        self.stdout.write(row.format("KEY ID", "NAME", "LAST4", "STATUS", "LAST USED", "EXPIRES"))
        for api_key in selectors.apikey_list_for_tenant(tenant=tenant):
            last_used = api_key.last_used_at.isoformat(timespec="seconds") if api_key.last_used_at else "never"
            expires = api_key.expires_at.isoformat(timespec="seconds") if api_key.expires_at else "never"
            self.stdout.write(row.format(api_key.key_id, api_key.name[:24] or "-", api_key.last4,
                                         api_key.status_at(now), last_used, expires))

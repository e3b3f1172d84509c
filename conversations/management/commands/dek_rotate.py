from django.core.management.base import BaseCommand, CommandError

from conversations import lifecycle
from tenants.management.commands._common import tenant_by_slug
from tenants.models import Tenant


class Command(BaseCommand):
    help = ("Rotate tenant data keys: add a new DEK version, re-encrypt conversations and messages in batches "
            "(reads keep working throughout), then destroy the old versions.")

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--tenant", help="tenant slug")
        target.add_argument("--all", action="store_true", help="every tenant that has a data key")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--settle", type=float, default=None,
                            help="seconds to wait for other processes' key caches before the final sweep "
                                 "(default: FAIRWAY_DEK_CACHE_SECONDS)")

    def handle(self, *args, tenant, all, batch_size, settle, **opts):
        if batch_size < 1:
            raise CommandError("--batch-size must be positive.")
        tenants = ([tenant_by_slug(tenant)] if tenant else
                   list(Tenant.objects.filter(data_keys__isnull=False).distinct()))
        for item in tenants:
            result = lifecycle.datakey_rotate(tenant_id=item.pk, batch_size=batch_size, settle_seconds=settle)
            self.stdout.write(f"{item.slug}: now DEK v{result.version}; re-encrypted {result.conversations} "
                              f"conversation(s), {result.messages} message(s); destroyed versions "
                              f"{list(result.destroyed_versions)}")

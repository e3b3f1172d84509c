from django.core.management.base import BaseCommand, CommandError

from conversations import lifecycle
from tenants.management.commands._common import tenant_by_slug


class Command(BaseCommand):
    help = ("Crypto-shred a tenant: destroy its data keys, delete its conversations, then delete the tenant "
            "and its API keys. Irreversible.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
        parser.add_argument("--keep-tenant", action="store_true",
                            help="only shred the conversations and keys; keep the tenant and its API keys")

    def handle(self, *args, slug, yes, keep_tenant, **opts):
        tenant = tenant_by_slug(slug)
        if not yes:
            raise CommandError(f"Refusing to shred tenant {slug!r} without --yes (irreversible).")
        if keep_tenant:
            result = lifecycle.tenant_conversations_shred(tenant_id=tenant.pk)
        else:
            from tenants.services import tenant_delete

            result = tenant_delete(tenant=tenant, confirm_slug=tenant.slug)  # audited as "system"
        self.stdout.write(f"shredded {slug}: {result.data_keys} data key(s) destroyed, {result.conversations} "
                          f"conversation(s) and {result.messages} message(s) deleted"
                          + ("" if keep_tenant else "; tenant deleted" if result.tenant_deleted else
                             "; tenant kept for its billing records (suspended, API keys revoked)"))

from django.core.management.base import BaseCommand, CommandError

from tenants import selectors, services
from tenants.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key by its public key id (takes effect immediately)."

    def add_arguments(self, parser):
        parser.add_argument("key_id", help="public key id (the part after 'fw_'), as shown by apikey_list")

    def handle(self, *args, **opts):
        try:
            api_key = selectors.apikey_get(key_id=opts["key_id"])
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key with key id {opts['key_id']!r}.") from None
        api_key = services.apikey_revoke(api_key=api_key)
        self.stdout.write(f"Revoked {api_key.display} (tenant {api_key.tenant.slug}) at {api_key.revoked_at}.")

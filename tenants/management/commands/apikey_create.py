from django.core.management.base import BaseCommand
from django.utils import timezone

from tenants import services
from tenants.management.commands._common import (parse_duration, parse_scopes, tenant_by_slug,
                                                 validation_as_command_error)
from tenants.models import ALL_SCOPES


class Command(BaseCommand):
    help = "Issue an API key for a tenant. The key is printed once, on the last line, and never again."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", default="", help="label for operators")
        parser.add_argument("--scopes", help=f"comma-separated subset of {','.join(ALL_SCOPES)} (default: all)")
        parser.add_argument("--expires-in", help="lifetime, e.g. 3600, 12h, 30d (default: never)")

    def handle(self, *args, **opts):
        tenant = tenant_by_slug(opts["tenant"])
        scopes = parse_scopes(opts["scopes"])
        expires_at = timezone.now() + parse_duration(opts["expires_in"]) if opts["expires_in"] else None
        with validation_as_command_error():
            api_key, plaintext = services.apikey_create(tenant=tenant, name=opts["name"], scopes=scopes,
                                                        expires_at=expires_at)
        self.stdout.write(f"Created {api_key.display} (key id {api_key.key_id}) for tenant {tenant.slug}; "
                          f"scopes: {','.join(api_key.scopes)}; expires: {api_key.expires_at or 'never'}.")
        self.stdout.write("Store this key now; it cannot be shown again:")
        self.stdout.write(plaintext)

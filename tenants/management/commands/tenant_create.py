from django.core.management.base import BaseCommand, CommandError

from tenants import selectors, services
from tenants.management.commands._common import validation_as_command_error
from tenants.models import Plan


class Command(BaseCommand):
    help = "Create a tenant on a plan."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--plan", required=True, help="plan name")
        parser.add_argument("--name", help="display name (default: the slug)")
        parser.add_argument("--exist-ok", action="store_true", help="succeed (unchanged) if the tenant exists")

    def handle(self, *args, **opts):
        try:
            plan = selectors.plan_get(name=opts["plan"])
        except Plan.DoesNotExist:
            raise CommandError(f"No plan named {opts['plan']!r}.") from None
        name = opts["name"] or opts["slug"]
        with validation_as_command_error():
            if opts["exist_ok"]:
                tenant, created = services.tenant_get_or_create(slug=opts["slug"], name=name, plan=plan)
            else:
                tenant, created = services.tenant_create(slug=opts["slug"], name=name, plan=plan), True
        self.stdout.write(f"{'Created' if created else 'Exists'}: tenant {tenant.slug} "
                          f"(id {tenant.pk}, plan {tenant.plan.name}, {tenant.status})")

from django.core.management.base import BaseCommand

from tenants import services

DEMO = "demo"


class Command(BaseCommand):
    help = ("Ensure plan 'demo' and tenant 'demo' exist, issue a fresh key and print it. Progress goes to "
            "stderr; stdout holds only the key, so `KEY=$(manage.py demo_setup)` captures it.")

    def handle(self, *args, **opts):
        plan, plan_created = services.plan_get_or_create(name=DEMO)
        tenant, tenant_created = services.tenant_get_or_create(slug=DEMO, name="Demo tenant", plan=plan)
        api_key, plaintext = services.apikey_create(tenant=tenant, name="demo_setup")
        self.stderr.write(f"plan {plan.name}: {'created' if plan_created else 'exists'}; "
                          f"tenant {tenant.slug}: {'created' if tenant_created else 'exists'} ({tenant.status}); "
                          f"new key {api_key.display}")
        self.stdout.write(plaintext)

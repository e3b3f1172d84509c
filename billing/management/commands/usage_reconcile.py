from django.core.management.base import BaseCommand

from billing.reconcile import billing_maintenance
from gateway.quotas import periods


class Command(BaseCommand):
    help = ("Close usage records left open by a crashed gateway (lease expired): bill what their last "
            "checkpoint saw delivered and release their quota holds. Also purges idempotency keys past 24 h. "
            "Safe to run at any time, e.g. every minute from cron.")

    def add_arguments(self, parser):
        parser.add_argument("--grace", type=float, default=0.0,
                            help="extra seconds past the lease before a record counts as abandoned")

    def handle(self, *args, grace, **opts):
        closed, purged = billing_maintenance(now=periods.now(), grace_s=grace)
        self.stdout.write(f"reconciled {closed} open usage record(s); purged {purged} idempotency key(s)")

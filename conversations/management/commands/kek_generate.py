from django.core.management.base import BaseCommand, CommandError

from conversations import crypto


class Command(BaseCommand):
    help = ("Print a new key-encryption key as a FAIRWAY_KEKS entry ('id:<base64>'). Put it FIRST in "
            "FAIRWAY_KEKS (keep the old ones after it), restart, then run `manage.py kek_rewrap`.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--id", required=True, help="KEK id, e.g. k2 (1-32 of [A-Za-z0-9_.-])")

    def handle(self, *args, **opts):
        try:
            self.stdout.write(crypto.kek_generate_line(opts["id"]))
        except crypto.KeyConfigError as exc:
            raise CommandError(str(exc)) from None

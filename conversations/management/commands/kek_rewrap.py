from django.core.management.base import BaseCommand, CommandError

from conversations import crypto, keystore


class Command(BaseCommand):
    help = ("Re-wrap every tenant data key under the primary (first) KEK of FAIRWAY_KEKS. No conversation "
            "data is re-encrypted and the gateway keeps serving; afterwards old KEKs can be removed.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size, **opts):
        try:
            ring = keystore.keyring()
            counts = keystore.kek_rewrap_all(batch_size=batch_size)
        except crypto.DecryptionError as exc:
            raise CommandError(f"Re-wrap stopped: {exc}.") from None
        for kek_id, count in sorted(counts.items()):
            self.stdout.write(f"re-wrapped {count} data key(s) from KEK {kek_id} to {ring.primary.id}")
        usage = keystore.kek_usage()
        self.stdout.write(f"data keys per KEK now: {usage or '{}'}")
        unused = [kek_id for kek_id in ring.ids[1:] if kek_id not in usage]
        if unused:
            self.stdout.write(f"KEK(s) {', '.join(unused)} wrap nothing any more and can be removed from FAIRWAY_KEKS.")

from decimal import Decimal

from django.core.management.base import BaseCommand

from tenants import services
from tenants.management.commands._common import validation_as_command_error


class Command(BaseCommand):
    help = "Create a plan (limits and prices)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--rpm", type=int, default=60, help="requests per minute")
        parser.add_argument("--tpm", type=int, default=100_000, help="tokens per minute")
        parser.add_argument("--monthly-token-budget", type=int, default=10_000_000)
        parser.add_argument("--max-concurrent-requests", type=int, default=4)
        parser.add_argument("--max-tokens-per-request", type=int, default=4096)
        parser.add_argument("--weight", type=Decimal, default=Decimal("1"), help="fair-share weight (> 0)")
        parser.add_argument("--price-input", type=Decimal, default=Decimal("0"), help="price per 1k input tokens")
        parser.add_argument("--price-output", type=Decimal, default=Decimal("0"), help="price per 1k output tokens")
        parser.add_argument("--models", default="", help="comma-separated model ids this plan may use (default: all)")
        parser.add_argument("--exist-ok", action="store_true", help="succeed (unchanged) if the plan exists")

    def handle(self, *args, **opts):
        limits = dict(rpm=opts["rpm"], tpm=opts["tpm"], monthly_token_budget=opts["monthly_token_budget"],
                      max_concurrent_requests=opts["max_concurrent_requests"],
                      max_tokens_per_request=opts["max_tokens_per_request"], weight=opts["weight"],
                      price_per_1k_input_tokens=opts["price_input"],
                      price_per_1k_output_tokens=opts["price_output"],
                      allowed_models=[m.strip() for m in opts["models"].split(",") if m.strip()])
        with validation_as_command_error():
            if opts["exist_ok"]:
                plan, created = services.plan_get_or_create(name=opts["name"], **limits)
            else:
                plan, created = services.plan_create(name=opts["name"], **limits), True
        self.stdout.write(f"{'Created' if created else 'Exists'}: plan {plan.name} "
                          f"(rpm={plan.rpm}, tpm={plan.tpm}, weight={plan.weight})")

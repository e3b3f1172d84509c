"""Usage metering and invoices. Plain data: behaviour lives in metering.py, invoices.py, selectors.py.

A UsageRecord is the durable truth about one completion request: it is opened (status `pending`,
with the tokens reserved and a lease) before the request is forwarded, and finalised with the
tokens the gateway delivered. Prices are snapshotted on the record, so a later price change never
rewrites history; invoices are sums over records.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

COST_PLACES = 10  # tokens x price-per-1k (6 places) / 1000 is exact at 9 places: no rounding per record
COST_DIGITS = 24


class UsageRecord(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # opened, not yet finalised (in flight, or left open by a crash)
        OK = "ok", "OK"
        CANCELLED = "cancelled", "Cancelled"  # the client went away; billed for what was delivered
        ERROR = "error", "Error"  # failed; billed only for what was delivered
        REJECTED = "rejected", "Rejected"  # refused by a limit before forwarding; never billed

    request_id = models.CharField(max_length=64, primary_key=True)  # the gateway's x-request-id
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="usage_records")
    api_key = models.ForeignKey("tenants.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="usage_records")
    model = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=32)  # chat.completions | completions
    stream = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=64, blank=True)  # which limit refused it, or the error code
    reserved_tokens = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    ttft_s = models.FloatField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    price_per_1k_input_tokens = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    price_per_1k_output_tokens = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    cost = models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES, default=Decimal("0"))
    created_at = models.DateTimeField(default=timezone.now)
    finalised_at = models.DateTimeField(null=True, blank=True)
    # While pending: renewed by the gateway that holds the request; past it, `usage_reconcile` closes it.
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="billing_usage_tenant_time"),
            models.Index(fields=["lease_expires_at"], condition=Q(status="pending"), name="billing_usage_open"),
        ]

    def __str__(self) -> str:
        return self.request_id

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Invoice(models.Model):
    """One tenant's bill for one calendar month (UTC). Regenerating a month replaces it in place."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    period_start = models.DateField()  # first day of the month
    number = models.CharField(max_length=64, unique=True)
    currency = models.CharField(max_length=3, default="USD")
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    amount = models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES, default=Decimal("0"))
    amount_due = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))  # rounded once
    open_records = models.PositiveIntegerField(default=0)  # pending records seen at generation (should be 0)
    generated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start", "tenant"]
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start"], name="billing_invoice_month")]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    """Usage of one model at one price pair (a mid-month price change gives two lines)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    price_per_1k_input_tokens = models.DecimalField(max_digits=12, decimal_places=6)
    price_per_1k_output_tokens = models.DecimalField(max_digits=12, decimal_places=6)
    input_amount = models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES)
    output_amount = models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES)
    amount = models.DecimalField(max_digits=COST_DIGITS, decimal_places=COST_PLACES)

    class Meta:
        ordering = ["model", "price_per_1k_input_tokens", "price_per_1k_output_tokens"]


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` for one tenant: claimed by the first request, then its stored result."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # sha256 of endpoint + canonical JSON body
    request_id = models.CharField(max_length=64)  # the request that owns (or produced) the result
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    locked_until = models.DateTimeField()  # an in-progress claim past this was abandoned (crash)
    result = models.BinaryField(null=True, blank=True, editable=False)  # AES-GCM sealed; holds content
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="billing_idempotency_key")]

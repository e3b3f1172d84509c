"""Tenants, their plans and API keys. Plain data: behaviour lives in services.py / selectors.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Scopes a key can carry; new keys get all of them unless told otherwise.
SCOPE_INFERENCE = "inference"  # models, chat, completions
SCOPE_CONVERSATIONS = "conversations"
SCOPE_USAGE = "usage"
ALL_SCOPES = (SCOPE_INFERENCE, SCOPE_CONVERSATIONS, SCOPE_USAGE)


def validate_scopes(value) -> None:
    """Declarative check (admin forms, full_clean): a non-empty list of known scopes."""
    if not isinstance(value, list) or not value or not set(value) <= set(ALL_SCOPES):
        raise ValidationError(f"Scopes must be a non-empty list drawn from: {', '.join(ALL_SCOPES)}.")


def _positive() -> list:
    return [MinValueValidator(1)]


def validate_model_ids(value) -> None:
    if not isinstance(value, list) or not all(isinstance(m, str) and m.strip() for m in value):
        raise ValidationError("Give a list of model ids (non-empty strings).")


class Plan(models.Model):
    name = models.CharField(max_length=64, unique=True)
    rpm = models.PositiveIntegerField("requests per minute", default=60, validators=_positive())
    tpm = models.PositiveIntegerField("tokens per minute", default=100_000, validators=_positive())
    monthly_token_budget = models.PositiveBigIntegerField(default=10_000_000, validators=_positive())
    max_concurrent_requests = models.PositiveIntegerField(default=4, validators=_positive())
    max_tokens_per_request = models.PositiveIntegerField(default=4096, validators=_positive())
    # Requests per minute for each API key (blank: a key may use the tenant's whole `rpm`). Quotas, gateway/quotas.
    rpm_per_key = models.PositiveIntegerField("requests per minute per key", null=True, blank=True,
                                              validators=_positive())
    # Fair-share weight for the inference scheduler: a weight-2 tenant gets twice the tokens under contention.
    weight = models.DecimalField(max_digits=8, decimal_places=3, default=Decimal("1"),
                                 validators=[MinValueValidator(Decimal("0.001"))])
    price_per_1k_input_tokens = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"),
                                                    validators=[MinValueValidator(Decimal("0"))])
    price_per_1k_output_tokens = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"),
                                                     validators=[MinValueValidator(Decimal("0"))])
    # Model ids this plan's keys may use; empty: every model the replicas serve.
    allowed_models = models.JSONField(default=list, blank=True, validators=[validate_model_ids],
                                      help_text="Model ids this plan may use, e.g. [\"SmolLM2-135M-Instruct\"]; "
                                                "empty: every model served.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(weight__gt=0), name="tenants_plan_weight_positive"),
            models.CheckConstraint(
                condition=Q(rpm__gt=0, tpm__gt=0, monthly_token_budget__gt=0, max_concurrent_requests__gt=0,
                            max_tokens_per_request__gt=0),
                name="tenants_plan_limits_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Per-tenant limit overrides (blank: the plan's value). Read by gateway/quotas via PlanLimits.
    rpm_override = models.PositiveIntegerField(null=True, blank=True, validators=_positive())
    rpm_per_key_override = models.PositiveIntegerField(null=True, blank=True, validators=_positive())
    tpm_override = models.PositiveIntegerField(null=True, blank=True, validators=_positive())
    monthly_token_budget_override = models.PositiveBigIntegerField(null=True, blank=True, validators=_positive())
    max_concurrent_requests_override = models.PositiveIntegerField(null=True, blank=True, validators=_positive())
    # Fair-share weight override (blank: the plan's weight); operators raise one tenant without a new plan.
    weight_override = models.DecimalField(max_digits=8, decimal_places=3, null=True, blank=True,
                                          validators=[MinValueValidator(Decimal("0.001"))])

    LIMIT_OVERRIDES = ("rpm", "rpm_per_key", "tpm", "monthly_token_budget", "max_concurrent_requests")

    class Meta:
        ordering = ["slug"]

    def limit_overrides(self) -> dict:
        """The overrides that are set, by PlanLimits field name (`weight` included when overridden)."""
        values = {name: getattr(self, f"{name}_override") for name in (*self.LIMIT_OVERRIDES, "weight")}
        return {name: value for name, value in values.items() if value is not None}

    def __str__(self) -> str:
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    # Public half of the key ("fw_<key_id>_…"): safe to show, used to find the row.
    key_id = models.CharField(max_length=32, unique=True, editable=False)
    # HMAC-SHA256(pepper, secret) hex; the plaintext secret is never stored.
    secret_hash = models.CharField(max_length=64, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    scopes = models.JSONField(default=list, validators=[validate_scopes])
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        """What operators see: the public id and the last 4 characters, never the secret."""
        return f"fw_{self.key_id}_…{self.last4}"

    def status_at(self, now: datetime) -> str:
        if self.revoked_at is not None:  # revocation is immediate, whatever the clock says
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

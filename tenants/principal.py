"""Value objects handed to the gateway after authentication, and the cached auth record.

The principal is a frozen snapshot: the hot path never touches the ORM after authenticating.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID


@dataclass(frozen=True, slots=True)
class PlanLimits:
    plan_id: int
    name: str
    rpm: int
    tpm: int
    monthly_token_budget: int
    max_concurrent_requests: int
    max_tokens_per_request: int
    weight: float
    price_per_1k_input_tokens: Decimal
    price_per_1k_output_tokens: Decimal
    rpm_per_key: int | None = None  # None: a key may use the tenant's whole rpm
    allowed_models: tuple[str, ...] = ()  # empty: every model served

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    @classmethod
    def from_plan(cls, plan, overrides: dict | None = None) -> PlanLimits:
        """The plan's limits with the tenant's overrides (Tenant.limit_overrides()) applied."""
        overrides = dict(overrides or {})
        weight = overrides.pop("weight", plan.weight)  # a tenant's weight override replaces the plan's
        limits = dict(rpm=plan.rpm, tpm=plan.tpm, monthly_token_budget=plan.monthly_token_budget,
                      max_concurrent_requests=plan.max_concurrent_requests,
                      rpm_per_key=getattr(plan, "rpm_per_key", None))
        limits.update(overrides)  # a tenant's override replaces the plan's value
        return cls(plan_id=plan.pk, name=plan.name, max_tokens_per_request=plan.max_tokens_per_request,
                   allowed_models=tuple(getattr(plan, "allowed_models", None) or ()),
                   weight=float(weight), price_per_1k_input_tokens=Decimal(plan.price_per_1k_input_tokens),
                   price_per_1k_output_tokens=Decimal(plan.price_per_1k_output_tokens), **limits)


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """Who is calling. Stands in as DRF's `request.user` (hence `is_authenticated`)."""

    api_key_id: UUID
    key_id: str
    tenant_id: UUID
    tenant_slug: str
    scopes: frozenset[str]
    plan: PlanLimits

    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class AuthRecord:
    """Everything authentication needs about one key, cached by public key id.

    Holds the secret's HMAC (not the secret) so every request still verifies the secret.
    Stored in the cache as a dict of primitives so a code change never unpickles stale classes.
    """

    api_key_id: UUID
    key_id: str
    secret_hash: str = field(repr=False)
    tenant_id: UUID
    tenant_slug: str
    tenant_active: bool
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    plan: PlanLimits

    def principal(self) -> ApiKeyPrincipal:
        return ApiKeyPrincipal(api_key_id=self.api_key_id, key_id=self.key_id, tenant_id=self.tenant_id,
                               tenant_slug=self.tenant_slug, scopes=self.scopes, plan=self.plan)

    def to_cache(self) -> dict:
        data = asdict(self)
        data.update(api_key_id=str(self.api_key_id), tenant_id=str(self.tenant_id), scopes=sorted(self.scopes),
                    expires_at=_ts(self.expires_at), revoked_at=_ts(self.revoked_at))
        data["plan"]["price_per_1k_input_tokens"] = str(self.plan.price_per_1k_input_tokens)
        data["plan"]["price_per_1k_output_tokens"] = str(self.plan.price_per_1k_output_tokens)
        return data

    @classmethod
    def from_cache(cls, data: dict) -> AuthRecord:
        plan = dict(data["plan"])
        plan["price_per_1k_input_tokens"] = Decimal(plan["price_per_1k_input_tokens"])
        plan["price_per_1k_output_tokens"] = Decimal(plan["price_per_1k_output_tokens"])
        plan["allowed_models"] = tuple(plan.get("allowed_models") or ())
        known = {f.name for f in fields(PlanLimits)}  # a newer writer's extra fields are ignored
        plan = {name: value for name, value in plan.items() if name in known}
        return cls(api_key_id=UUID(data["api_key_id"]), key_id=data["key_id"], secret_hash=data["secret_hash"],
                   tenant_id=UUID(data["tenant_id"]), tenant_slug=data["tenant_slug"],
                   tenant_active=data["tenant_active"], scopes=frozenset(data["scopes"]),
                   expires_at=_dt(data["expires_at"]), revoked_at=_dt(data["revoked_at"]),
                   plan=PlanLimits(**plan))


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)

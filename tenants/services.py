"""Writes for plans, tenants and API keys. Keyword-only, typed, named `<entity>_<action>`.

Anything that changes what authentication would decide (revoke, rotate, suspend, plan change)
invalidates the cached auth records here, so callers never have to remember to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tenants import authcache, keys, selectors
from tenants.models import ALL_SCOPES, ApiKey, Plan, Tenant

logger = logging.getLogger(__name__)

DEFAULT_ROTATION_GRACE = timedelta(hours=24)
_DECIMAL_PLAN_FIELDS = ("weight", "price_per_1k_input_tokens", "price_per_1k_output_tokens")
_PLAN_FIELDS = ("rpm", "tpm", "monthly_token_budget", "max_concurrent_requests", "max_tokens_per_request",
                "rpm_per_key", *_DECIMAL_PLAN_FIELDS)


def _now() -> datetime:
    """The clock; tests pass `now=` or patch this."""
    return timezone.now()


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: the row plus the plaintext, which exists only here. `a, k = issued` unpacks."""

    api_key: ApiKey
    plaintext: str = field(repr=False)

    def __iter__(self) -> Iterator:
        return iter((self.api_key, self.plaintext))


def auth_cache_invalidate(*, key_ids: Iterable[str]) -> None:
    authcache.records_invalidate(key_ids)


# --- plans --------------------------------------------------------------------------------------

def plan_create(*, name: str, rpm: int = 60, tpm: int = 100_000, monthly_token_budget: int = 10_000_000,
                max_concurrent_requests: int = 4, max_tokens_per_request: int = 4096,
                weight: Decimal | float | str = Decimal("1"), price_per_1k_input_tokens: Decimal | str = Decimal("0"),
                price_per_1k_output_tokens: Decimal | str = Decimal("0")) -> Plan:
    plan = Plan(name=name, rpm=rpm, tpm=tpm, monthly_token_budget=monthly_token_budget,
                max_concurrent_requests=max_concurrent_requests, max_tokens_per_request=max_tokens_per_request,
                weight=Decimal(str(weight)), price_per_1k_input_tokens=Decimal(str(price_per_1k_input_tokens)),
                price_per_1k_output_tokens=Decimal(str(price_per_1k_output_tokens)))
    plan.full_clean()
    plan.save()
    return plan


def plan_get_or_create(*, name: str, **limits) -> tuple[Plan, bool]:
    """Idempotent setup (demo, scripts): an existing plan is returned unchanged."""
    try:
        return selectors.plan_get(name=name), False
    except Plan.DoesNotExist:
        return plan_create(name=name, **limits), True


def plan_update(*, plan: Plan, **changes) -> Plan:
    """Change limits/prices (only the fields in `_PLAN_FIELDS`); every key on the plan sees it at once."""
    unknown = set(changes) - set(_PLAN_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown plan fields: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(plan, name, Decimal(str(value)) if name in _DECIMAL_PLAN_FIELDS else value)
    plan.full_clean()
    plan.save()
    auth_cache_invalidate(key_ids=selectors.apikey_key_ids_for_plan(plan=plan))
    return plan


# --- tenants ------------------------------------------------------------------------------------

def tenant_create(*, name: str, slug: str, plan: Plan, now: datetime | None = None) -> Tenant:
    tenant = Tenant(name=name, slug=slug, plan=plan, created_at=now or _now())
    tenant.full_clean()
    tenant.save()
    return tenant


def tenant_get_or_create(*, slug: str, name: str, plan: Plan) -> tuple[Tenant, bool]:
    try:
        return selectors.tenant_get_by_slug(slug=slug), False
    except Tenant.DoesNotExist:
        return tenant_create(name=name, slug=slug, plan=plan), True


def _tenant_set(tenant: Tenant, **values) -> Tenant:
    Tenant.objects.filter(pk=tenant.pk).update(**values)
    for name, value in values.items():
        setattr(tenant, name, value)
    auth_cache_invalidate(key_ids=selectors.apikey_key_ids_for_tenant(tenant=tenant))
    return tenant


def tenant_suspend(*, tenant: Tenant) -> Tenant:
    logger.info("tenant suspended: %s", tenant.slug)
    return _tenant_set(tenant, status=Tenant.Status.SUSPENDED)


def tenant_reactivate(*, tenant: Tenant) -> Tenant:
    logger.info("tenant reactivated: %s", tenant.slug)
    return _tenant_set(tenant, status=Tenant.Status.ACTIVE)


def tenant_change_plan(*, tenant: Tenant, plan: Plan) -> Tenant:
    return _tenant_set(tenant, plan=plan)


# --- API keys -----------------------------------------------------------------------------------

def _clean_scopes(scopes: Iterable[str] | None) -> list[str]:
    if scopes is None:
        return sorted(ALL_SCOPES)
    cleaned = sorted(set(scopes))
    unknown = set(cleaned) - set(ALL_SCOPES)
    if unknown or not cleaned:
        raise ValidationError(f"Scopes must be a non-empty subset of {', '.join(ALL_SCOPES)}.")
    return cleaned


def apikey_create(*, tenant: Tenant, name: str = "", scopes: Iterable[str] | None = None,
                  expires_at: datetime | None = None, now: datetime | None = None) -> IssuedKey:
    """Issue a key. The plaintext is returned here once and never stored or logged."""
    now = now or _now()
    if expires_at is not None and expires_at <= now:
        raise ValidationError("expires_at must be in the future.")
    generated = keys.generate()
    api_key = ApiKey.objects.create(tenant=tenant, name=name, key_id=generated.key_id,
                                    secret_hash=keys.hash_secret(generated.secret), last4=generated.last4,
                                    scopes=_clean_scopes(scopes), created_at=now, expires_at=expires_at)
    logger.info("api key created: %s tenant=%s", api_key.key_id, tenant.slug)
    return IssuedKey(api_key=api_key, plaintext=generated.plaintext)


def apikey_revoke(*, api_key: ApiKey, now: datetime | None = None) -> ApiKey:
    """Revoke at once (idempotent: a second call keeps the first revocation time)."""
    now = now or _now()
    if ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now):
        logger.info("api key revoked: %s", api_key.key_id)
    api_key.refresh_from_db(fields=["revoked_at"])
    auth_cache_invalidate(key_ids=[api_key.key_id])
    return api_key


def apikey_rotate(*, api_key: ApiKey, grace: timedelta = DEFAULT_ROTATION_GRACE, name: str | None = None,
                  expires_at: datetime | None = None, now: datetime | None = None) -> IssuedKey:
    """Issue a replacement with the same tenant and scopes; the old key keeps working for `grace`.

    `grace=timedelta(0)` retires the old key immediately. An earlier existing expiry is kept.
    """
    now = now or _now()
    if grace < timedelta(0):
        raise ValidationError("grace must not be negative.")
    if api_key.status_at(now) != "active":
        raise ValidationError("Only an active key can be rotated.")
    cutoff = now + grace
    with transaction.atomic():
        issued = apikey_create(tenant=api_key.tenant, name=api_key.name if name is None else name,
                               scopes=api_key.scopes, expires_at=expires_at, now=now)
        if api_key.expires_at is None or cutoff < api_key.expires_at:
            api_key.expires_at = cutoff
            ApiKey.objects.filter(pk=api_key.pk).update(expires_at=cutoff)
    auth_cache_invalidate(key_ids=[api_key.key_id])
    logger.info("api key rotated: %s -> %s", api_key.key_id, issued.api_key.key_id)
    return issued


def _touch_filter(api_key_id: UUID | str, now: datetime, interval: int) -> Q:
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - timedelta(seconds=interval))
    return Q(pk=api_key_id) & stale


def apikey_touch_last_used(*, api_key_id: UUID | str, now: datetime | None = None) -> bool:
    """Record use coarsely: a cache `add` (skipped when this process already tried) lets one request
    per key per interval try a conditional UPDATE, which itself refuses to move last_used_at forward
    by less than the interval. Returns whether a row was written."""
    now = now or _now()
    guard, interval = authcache.touch_guard(api_key_id=api_key_id, now=now)
    if authcache.touch_tried_locally(guard) or not cache.add(guard, 1, timeout=interval):
        return False
    return ApiKey.objects.filter(_touch_filter(api_key_id, now, interval)).update(last_used_at=now) > 0


async def aapikey_touch_last_used(*, api_key_id: UUID | str, now: datetime | None = None) -> bool:
    now = now or _now()
    guard, interval = authcache.touch_guard(api_key_id=api_key_id, now=now)
    if authcache.touch_tried_locally(guard) or not await cache.aadd(guard, 1, timeout=interval):
        return False
    return await ApiKey.objects.filter(_touch_filter(api_key_id, now, interval)).aupdate(last_used_at=now) > 0

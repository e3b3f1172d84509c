"""Writes for plans, tenants and API keys. Keyword-only, typed, named `<entity>_<action>`.

Anything that changes what authentication would decide (revoke, rotate, suspend, plan change)
invalidates the cached auth records here, so callers never have to remember to.

Every operator or key action writes one audit event (audit app) in the same transaction as the
change itself, and only when something actually changed (a second revoke records nothing).
`actor=` says who acted; without it, the actor of `audit.actor.acting_as()` or "system".
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

from audit.actor import Actor, acting_as, actor_resolve
from audit.models import AuditEvent
from audit.services import audit_record, diff
from tenants import authcache, keys, selectors
from tenants.models import ALL_SCOPES, ApiKey, Plan, Tenant

Action = AuditEvent.Action

logger = logging.getLogger(__name__)

DEFAULT_ROTATION_GRACE = timedelta(hours=24)
_DECIMAL_PLAN_FIELDS = ("weight", "price_per_1k_input_tokens", "price_per_1k_output_tokens")
_PLAN_FIELDS = ("rpm", "tpm", "monthly_token_budget", "max_concurrent_requests", "max_tokens_per_request",
                "rpm_per_key", "allowed_models", *_DECIMAL_PLAN_FIELDS)
_TENANT_OVERRIDE_FIELDS = tuple(f"{name}_override" for name in (*Tenant.LIMIT_OVERRIDES, "weight"))
_TENANT_EDITABLE = ("name", "slug", "plan", *_TENANT_OVERRIDE_FIELDS)


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


def _invalidate(key_ids: Iterable[str]) -> None:
    """Now (callers and tests see it at once) and again after commit: a request that re-cached the
    old row between our write and the commit must not keep a revoked key alive for the cache TTL."""
    key_ids = list(key_ids)
    auth_cache_invalidate(key_ids=key_ids)
    transaction.on_commit(lambda: auth_cache_invalidate(key_ids=key_ids))


def _plan_values(plan: Plan) -> dict:
    return {name: getattr(plan, name) for name in _PLAN_FIELDS}


def _audit_plan(action: str, plan: Plan, changes: dict, actor: Actor | None) -> None:
    audit_record(action=action, target_type="plan", target_id=str(plan.pk), target_repr=plan.name,
                 changes=changes, actor=actor)


def _audit_tenant(action: str, tenant: Tenant, changes: dict | None, actor: Actor | None) -> None:
    audit_record(action=action, target_type="tenant", target_id=str(tenant.pk or ""), target_repr=tenant.slug,
                 tenant_id=tenant.pk, tenant_slug=tenant.slug, changes=changes, actor=actor)


def _audit_key(action: str, api_key: ApiKey, tenant: Tenant, changes: dict | None, actor: Actor | None) -> None:
    audit_record(action=action, target_type="apikey", target_id=api_key.key_id, target_repr=api_key.display,
                 tenant_id=tenant.pk, tenant_slug=tenant.slug, changes=changes, actor=actor)


# --- plans --------------------------------------------------------------------------------------

def plan_create(*, name: str, rpm: int = 60, tpm: int = 100_000, monthly_token_budget: int = 10_000_000,
                max_concurrent_requests: int = 4, max_tokens_per_request: int = 4096,
                weight: Decimal | float | str = Decimal("1"), price_per_1k_input_tokens: Decimal | str = Decimal("0"),
                price_per_1k_output_tokens: Decimal | str = Decimal("0"), rpm_per_key: int | None = None,
                allowed_models: list[str] | None = None, actor: Actor | None = None) -> Plan:
    plan = Plan(rpm_per_key=rpm_per_key, allowed_models=list(allowed_models or []), name=name, rpm=rpm, tpm=tpm, monthly_token_budget=monthly_token_budget,
                max_concurrent_requests=max_concurrent_requests, max_tokens_per_request=max_tokens_per_request,
                weight=Decimal(str(weight)), price_per_1k_input_tokens=Decimal(str(price_per_1k_input_tokens)),
                price_per_1k_output_tokens=Decimal(str(price_per_1k_output_tokens)))
    plan.full_clean()
    with transaction.atomic():
        plan.save()
        _audit_plan(Action.PLAN_CREATE, plan, {"before": {}, "after": _plan_values(plan)}, actor)
    return plan


def plan_get_or_create(*, name: str, **limits) -> tuple[Plan, bool]:
    """Idempotent setup (demo, scripts): an existing plan is returned unchanged."""
    try:
        return selectors.plan_get(name=name), False
    except Plan.DoesNotExist:
        return plan_create(name=name, **limits), True


def plan_update(*, plan: Plan, actor: Actor | None = None, **changes) -> Plan:
    """Change limits/prices (only the fields in `_PLAN_FIELDS`); every key on the plan sees it at once."""
    unknown = set(changes) - set(_PLAN_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown plan fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        stored = Plan.objects.select_for_update().get(pk=plan.pk)  # "before" as committed, not as edited
        before = _plan_values(stored)
        for name, value in changes.items():
            is_decimal = name in _DECIMAL_PLAN_FIELDS and value is not None
            setattr(plan, name, Decimal(str(value)) if is_decimal else value)
        plan.full_clean()
        plan.save()
        changed = diff(before, _plan_values(plan))
        if changed:
            _audit_plan(Action.PLAN_UPDATE, plan, changed, actor)
    _invalidate(selectors.apikey_key_ids_for_plan(plan=plan))
    return plan


# --- tenants ------------------------------------------------------------------------------------

def tenant_create(*, name: str, slug: str, plan: Plan, now: datetime | None = None,
                  actor: Actor | None = None, **overrides) -> Tenant:
    """`overrides`: `<limit>_override` / `weight_override` values (admin add form)."""
    unknown = set(overrides) - set(_TENANT_OVERRIDE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown tenant fields: {', '.join(sorted(unknown))}")
    tenant = Tenant(name=name, slug=slug, plan=plan, created_at=now or _now(), **overrides)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        _audit_tenant(Action.TENANT_CREATE, tenant, {"before": {}, "after": _tenant_values(tenant)}, actor)
    return tenant


def tenant_get_or_create(*, slug: str, name: str, plan: Plan) -> tuple[Tenant, bool]:
    try:
        return selectors.tenant_get_by_slug(slug=slug), False
    except Tenant.DoesNotExist:
        return tenant_create(name=name, slug=slug, plan=plan), True


def _tenant_values(tenant: Tenant) -> dict:
    values = {name: getattr(tenant, name) for name in ("name", "slug", "status", *_TENANT_OVERRIDE_FIELDS)}
    values["plan"] = tenant.plan.name if tenant.plan_id else None
    return values


def _tenant_update(tenant: Tenant, action: str, actor: Actor | None, **values) -> Tenant:
    """Apply `values` and audit before/after in one transaction; no change → no write, no event."""
    with transaction.atomic():
        stored = Tenant.objects.select_for_update().select_related("plan").get(pk=tenant.pk)
        before = _tenant_values(stored)
        for name, value in values.items():
            setattr(stored, name, value)
        stored.full_clean()
        changed = diff(before, _tenant_values(stored))
        if changed:
            Tenant.objects.filter(pk=tenant.pk).update(**values)
            _audit_tenant(action, stored, changed, actor)
    for name, value in values.items():
        setattr(tenant, name, value)
    if changed:
        _invalidate(selectors.apikey_key_ids_for_tenant(tenant=tenant))
    return tenant


def tenant_suspend(*, tenant: Tenant, actor: Actor | None = None) -> Tenant:
    logger.info("tenant suspended: %s", tenant.slug)
    return _tenant_update(tenant, Action.TENANT_SUSPEND, actor, status=Tenant.Status.SUSPENDED)


def tenant_reactivate(*, tenant: Tenant, actor: Actor | None = None) -> Tenant:
    logger.info("tenant reactivated: %s", tenant.slug)
    return _tenant_update(tenant, Action.TENANT_REACTIVATE, actor, status=Tenant.Status.ACTIVE)


def tenant_change_plan(*, tenant: Tenant, plan: Plan, actor: Actor | None = None) -> Tenant:
    return _tenant_update(tenant, Action.TENANT_CHANGE_PLAN, actor, plan=plan)


def tenant_change_weight(*, tenant: Tenant, weight: Decimal | str | None, actor: Actor | None = None) -> Tenant:
    """Set the tenant's fair-share weight (None: back to the plan's weight)."""
    value = None if weight in (None, "") else Decimal(str(weight))
    return _tenant_update(tenant, Action.TENANT_CHANGE_WEIGHT, actor, weight_override=value)


def tenant_update(*, tenant: Tenant, actor: Actor | None = None, **changes) -> Tenant:
    """Edit name/slug/plan/limit overrides (the admin form); status changes go through suspend/reactivate."""
    unknown = set(changes) - set(_TENANT_EDITABLE)
    if unknown:
        raise ValidationError(f"Unknown tenant fields: {', '.join(sorted(unknown))}")
    return _tenant_update(tenant, Action.TENANT_UPDATE, actor, **changes)


def tenant_delete(*, tenant: Tenant, confirm_slug: str, actor: Actor | None = None):
    """Delete a tenant, crypto-shredding its conversations (conversations.lifecycle.tenant_shred).

    `confirm_slug` must equal the slug (the operator typed it): deletion is irreversible. A tenant
    with billing records is kept (suspended, keys revoked) by the shred service; the event says so.
    Nested actions of the shred service (suspend, revoke) are attributed to the same actor.
    """
    if confirm_slug != tenant.slug:
        raise ValidationError("Type the tenant's slug exactly to confirm deletion.")
    from conversations.lifecycle import tenant_shred  # the app that owns the encrypted data shreds it

    actor = actor_resolve(actor)
    tenant_id, slug = tenant.pk, tenant.slug
    with transaction.atomic(), acting_as(actor):
        result = tenant_shred(tenant=tenant)
        audit_record(action=Action.TENANT_DELETE, target_type="tenant", target_id=str(tenant_id),
                     target_repr=slug, tenant_id=tenant_id, tenant_slug=slug, actor=actor,
                     changes={"tenant_deleted": result.tenant_deleted, "data_keys_destroyed": result.data_keys,
                              "conversations_deleted": result.conversations,
                              "messages_deleted": result.messages})
    return result


# --- API keys -----------------------------------------------------------------------------------

def _clean_scopes(scopes: Iterable[str] | None) -> list[str]:
    if scopes is None:
        return sorted(ALL_SCOPES)
    cleaned = sorted(set(scopes))
    unknown = set(cleaned) - set(ALL_SCOPES)
    if unknown or not cleaned:
        raise ValidationError(f"Scopes must be a non-empty subset of {', '.join(ALL_SCOPES)}.")
    return cleaned


def _key_values(api_key: ApiKey) -> dict:
    return {"name": api_key.name, "scopes": sorted(api_key.scopes or []), "expires_at": api_key.expires_at}


def apikey_create(*, tenant: Tenant, name: str = "", scopes: Iterable[str] | None = None,
                  expires_at: datetime | None = None, now: datetime | None = None,
                  actor: Actor | None = None) -> IssuedKey:
    """Issue a key. The plaintext is returned here once and never stored, logged or audited."""
    with transaction.atomic():
        issued = _apikey_issue(tenant=tenant, name=name, scopes=scopes, expires_at=expires_at, now=now)
        _audit_key(Action.APIKEY_CREATE, issued.api_key, tenant,
                   {"before": {}, "after": _key_values(issued.api_key)}, actor)
    return issued


def _apikey_issue(*, tenant: Tenant, name: str, scopes: Iterable[str] | None, expires_at: datetime | None,
                  now: datetime | None) -> IssuedKey:
    now = now or _now()
    if expires_at is not None and expires_at <= now:
        raise ValidationError("expires_at must be in the future.")
    generated = keys.generate()
    api_key = ApiKey.objects.create(tenant=tenant, name=name, key_id=generated.key_id,
                                    secret_hash=keys.hash_secret(generated.secret), last4=generated.last4,
                                    scopes=_clean_scopes(scopes), created_at=now, expires_at=expires_at)
    logger.info("api key created: %s tenant=%s", api_key.key_id, tenant.slug)
    return IssuedKey(api_key=api_key, plaintext=generated.plaintext)


def apikey_revoke(*, api_key: ApiKey, now: datetime | None = None, actor: Actor | None = None) -> ApiKey:
    """Revoke at once (idempotent: a second call keeps the first revocation time and records nothing)."""
    now = now or _now()
    with transaction.atomic():
        if ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now):
            logger.info("api key revoked: %s", api_key.key_id)
            _audit_key(Action.APIKEY_REVOKE, api_key, api_key.tenant,
                       {"before": {"revoked_at": None}, "after": {"revoked_at": now}}, actor)
    api_key.refresh_from_db(fields=["revoked_at"])
    _invalidate([api_key.key_id])
    return api_key


def apikey_update(*, api_key: ApiKey, actor: Actor | None = None, **changes) -> ApiKey:
    """Edit a key's name, scopes or expiry (the admin form); revoke and rotate have their own services."""
    unknown = set(changes) - {"name", "scopes", "expires_at"}
    if unknown:
        raise ValidationError(f"Unknown API key fields: {', '.join(sorted(unknown))}")
    if "scopes" in changes:
        changes["scopes"] = _clean_scopes(changes["scopes"])
    with transaction.atomic():
        stored = ApiKey.objects.select_for_update().select_related("tenant").get(pk=api_key.pk)
        before = _key_values(stored)
        for name, value in changes.items():
            setattr(stored, name, value)
        changed = diff(before, _key_values(stored))
        if changed:
            ApiKey.objects.filter(pk=api_key.pk).update(**changes)
            _audit_key(Action.APIKEY_UPDATE, stored, stored.tenant, changed, actor)
    for name, value in changes.items():
        setattr(api_key, name, value)
    _invalidate([api_key.key_id])
    return api_key


def apikey_rotate(*, api_key: ApiKey, grace: timedelta = DEFAULT_ROTATION_GRACE, name: str | None = None,
                  expires_at: datetime | None = None, now: datetime | None = None,
                  actor: Actor | None = None) -> IssuedKey:
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
        old_expiry = api_key.expires_at
        issued = _apikey_issue(tenant=api_key.tenant, name=api_key.name if name is None else name,
                               scopes=api_key.scopes, expires_at=expires_at, now=now)
        if api_key.expires_at is None or cutoff < api_key.expires_at:
            api_key.expires_at = cutoff
            ApiKey.objects.filter(pk=api_key.pk).update(expires_at=cutoff)
        _audit_key(Action.APIKEY_ROTATE, api_key, api_key.tenant,
                   {"before": {"expires_at": old_expiry}, "after": {"expires_at": api_key.expires_at},
                    "replacement_key_id": issued.api_key.key_id, "grace_seconds": int(grace.total_seconds())},
                   actor)
    _invalidate([api_key.key_id])
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
    from config import dbthread

    def touch() -> int:
        return ApiKey.objects.filter(_touch_filter(api_key_id, now, interval)).update(last_used_at=now)

    return await dbthread.query(touch) > 0

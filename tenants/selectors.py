"""Reads for tenants, plans and API keys. Keyword-only, no side effects."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from tenants.models import ApiKey, Plan, Tenant
from tenants.principal import AuthRecord, PlanLimits


def plan_get(*, name: str) -> Plan:
    return Plan.objects.get(name=name)


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.all()


def tenant_get(*, tenant_id: UUID | str) -> Tenant:
    return Tenant.objects.select_related("plan").get(pk=tenant_id)


def tenant_get_by_slug(*, slug: str) -> Tenant:
    return Tenant.objects.select_related("plan").get(slug=slug)


def apikey_get(*, key_id: str) -> ApiKey:
    """By public key id (the part after `fw_`)."""
    return ApiKey.objects.select_related("tenant").get(key_id=key_id)


def apikey_list_for_tenant(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")


def apikey_key_ids_for_tenant(*, tenant: Tenant) -> list[str]:
    return list(ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).values_list("key_id", flat=True))


def apikey_key_ids_for_plan(*, plan: Plan) -> list[str]:
    return list(ApiKey.objects.filter(tenant__plan=plan, revoked_at__isnull=True)
                .values_list("key_id", flat=True))


def _auth_queryset() -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("tenant__plan")


def apikey_auth_record(*, key_id: str) -> AuthRecord | None:
    """One query: the key with its tenant and plan, as the record authentication caches."""
    api_key = _auth_queryset().filter(key_id=key_id).first()
    return None if api_key is None else _to_record(api_key)


async def aapikey_auth_record(*, key_id: str) -> AuthRecord | None:
    """On the request-path database threads (config/dbthread.py), not a per-request thread."""
    from config import dbthread

    return await dbthread.query(apikey_auth_record, key_id=key_id)


def _to_record(api_key: ApiKey) -> AuthRecord:
    tenant = api_key.tenant
    return AuthRecord(api_key_id=api_key.pk, key_id=api_key.key_id, secret_hash=api_key.secret_hash,
                      tenant_id=tenant.pk, tenant_slug=tenant.slug, tenant_active=tenant.is_active,
                      scopes=frozenset(api_key.scopes or ()), expires_at=api_key.expires_at,
                      revoked_at=api_key.revoked_at,
                      plan=PlanLimits.from_plan(tenant.plan, tenant.limit_overrides()))

"""Writes for quota settings. Keyword-only, typed, named `<entity>_<action>`."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from tenants import selectors, services
from tenants.models import Tenant


def tenant_limits_override(*, tenant: Tenant, **limits: int | None) -> Tenant:
    """Override a tenant's plan limits (an int) or go back to the plan's value (None): rpm,
    rpm_per_key, tpm, monthly_token_budget, max_concurrent_requests. Every key sees it at once."""
    unknown = set(limits) - set(Tenant.LIMIT_OVERRIDES)
    if unknown:
        raise ValidationError(f"Unknown limits: {', '.join(sorted(unknown))}")
    for name, value in limits.items():
        setattr(tenant, f"{name}_override", value)
    tenant.full_clean()
    tenant.save(update_fields=[f"{name}_override" for name in limits])
    services.auth_cache_invalidate(key_ids=selectors.apikey_key_ids_for_tenant(tenant=tenant))
    return tenant

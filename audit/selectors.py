"""Reads of the audit log."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from .models import AuditEvent


def audit_list_for_tenant(*, tenant_id: UUID, limit: int = 20) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(tenant_id=tenant_id).order_by("-created_at", "-id")[:limit]

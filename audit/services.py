"""Writing audit events. Callers write the event inside the transaction of the action itself, so
an action and its record commit (or roll back) together: never an action without its event."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from .actor import Actor, actor_resolve
from .models import AuditEvent

logger = logging.getLogger("fairway.audit")


def _jsonable(value: dict | None) -> dict:
    # Decimals, datetimes and UUIDs as strings, exactly as an auditor reads them.
    return json.loads(json.dumps(value or {}, cls=DjangoJSONEncoder))


def audit_record(*, action: str, target_type: str, target_id: str, target_repr: str,
                 tenant_id: UUID | None = None, tenant_slug: str = "", changes: dict | None = None,
                 actor: Actor | None = None, now: datetime | None = None) -> AuditEvent:
    actor = actor_resolve(actor)
    event = AuditEvent.objects.create(
        created_at=now or timezone.now(), action=action, actor_kind=actor.kind, actor_name=actor.name,
        actor_user_id=actor.user_id, ip=actor.ip, request_id=actor.request_id[:64], target_type=target_type,
        target_id=str(target_id), target_repr=str(target_repr)[:200], tenant_id=tenant_id,
        tenant_slug=tenant_slug or "", changes=_jsonable(changes))
    logger.info("audit %s %s:%s by %s from %s", action, target_type, target_id, actor.name or actor.kind,
                actor.ip or "-")
    return event


def diff(before: dict, after: dict) -> dict:
    """{"before": {...}, "after": {...}} restricted to the keys whose value changed ({} if none)."""
    changed = [name for name in after if before.get(name) != after.get(name)]
    if not changed:
        return {}
    return {"before": {n: before.get(n) for n in changed}, "after": {n: after.get(n) for n in changed}}

"""The audit log: one append-only row per operator or key action.

No foreign keys: an event must outlive the tenant, key or user it names (a deleted tenant's
history is exactly what an auditor asks for). `changes` holds before/after values of what changed,
never a secret, key hash or message content.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AppendOnlyError(RuntimeError):
    pass


class AuditEventQuerySet(models.QuerySet):
    # Guards against accidental bulk edits from code; PostgreSQL also refuses them with a trigger.
    def update(self, **kwargs):
        raise AppendOnlyError("The audit log is append-only.")

    def delete(self):
        raise AppendOnlyError("The audit log is append-only.")


class AuditEvent(models.Model):
    class Action(models.TextChoices):  # labels = values: what operators filter and grep for
        TENANT_CREATE = "tenant.create", "tenant.create"
        TENANT_UPDATE = "tenant.update", "tenant.update"
        TENANT_SUSPEND = "tenant.suspend", "tenant.suspend"
        TENANT_REACTIVATE = "tenant.reactivate", "tenant.reactivate"
        TENANT_CHANGE_PLAN = "tenant.change_plan", "tenant.change_plan"
        TENANT_CHANGE_WEIGHT = "tenant.change_weight", "tenant.change_weight"
        TENANT_DELETE = "tenant.delete", "tenant.delete"
        PLAN_CREATE = "plan.create", "plan.create"
        PLAN_UPDATE = "plan.update", "plan.update"
        APIKEY_CREATE = "apikey.create", "apikey.create"
        APIKEY_UPDATE = "apikey.update", "apikey.update"
        APIKEY_REVOKE = "apikey.revoke", "apikey.revoke"
        APIKEY_ROTATE = "apikey.rotate", "apikey.rotate"
        AUTH_LOGIN = "auth.login", "auth.login"
        AUTH_LOCKOUT = "auth.lockout", "auth.lockout"

    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    actor_kind = models.CharField(max_length=16)  # user | system | anonymous
    actor_name = models.CharField(max_length=150, blank=True, db_index=True)
    actor_user_id = models.IntegerField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    target_type = models.CharField(max_length=32)  # tenant | plan | apikey | user
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=200)
    tenant_id = models.UUIDField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True)  # {"before": {...}, "after": {...}} and details

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant_id", "-created_at"], name="audit_tenant_time"),
                   models.Index(fields=["target_type", "target_id"], name="audit_target")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr} by {self.actor_name or self.actor_kind}"

    def save(self, *args, **kwargs):
        if not self._state.adding:  # append-only: a row is written once, never rewritten
            raise AppendOnlyError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("The audit log is append-only.")

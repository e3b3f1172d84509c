"""The audit log in the admin: read-only and undeletable, filterable by action, actor, tenant, time."""

from django.contrib import admin
from django.utils.html import format_html

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "actor_name", "ip", "target_type", "target_repr", "tenant_slug",
                    "change_summary")
    list_filter = ("action", "target_type", "actor_kind", "actor_name", "tenant_slug", "created_at")
    search_fields = ("target_repr", "target_id", "tenant_slug", "actor_name", "ip", "request_id")
    date_hierarchy = "created_at"
    list_per_page = 100
    fields = ("created_at", "action", "actor_kind", "actor_name", "actor_user_id", "ip", "request_id",
              "target_type", "target_id", "target_repr", "tenant_id", "tenant_slug", "changes")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # view permission still shows the detail page, read-only

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="changes")
    def change_summary(self, obj):
        before, after = obj.changes.get("before"), obj.changes.get("after") or {}
        if not after:
            return ""
        if before == {}:
            return "created"  # the full initial values are on the event's page
        text = "; ".join(f"{name}: {before.get(name)!s} → {after.get(name)!s}" for name in after)
        return format_html("<small>{}</small>", text if len(text) <= 160 else text[:159] + "…")

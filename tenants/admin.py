"""Operator admin. Edits that change authentication go through services (cache invalidation);
keys are issued with `manage.py apikey_create`, never here, so a secret never reaches a page."""

from django.contrib import admin, messages
from django.utils import timezone

from tenants import selectors, services
from tenants.models import ApiKey, Plan, Tenant


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "rpm", "tpm", "monthly_token_budget", "max_concurrent_requests",
                    "max_tokens_per_request", "weight", "price_per_1k_input_tokens",
                    "price_per_1k_output_tokens", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:  # cached principals carry a plan snapshot
            services.auth_cache_invalidate(key_ids=selectors.apikey_key_ids_for_plan(plan=obj))


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("key_id", "name", "last4", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "status", "plan", "created_at")
    list_filter = ("status", "plan")
    search_fields = ("slug", "name", "id")
    readonly_fields = ("id", "created_at")
    list_select_related = ("plan",)
    inlines = [ApiKeyInline]
    actions = ["suspend", "reactivate"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:  # status or plan may have changed
            services.auth_cache_invalidate(key_ids=selectors.apikey_key_ids_for_tenant(tenant=obj))

    def delete_model(self, request, obj):
        key_ids = selectors.apikey_key_ids_for_tenant(tenant=obj)
        super().delete_model(request, obj)
        services.auth_cache_invalidate(key_ids=key_ids)

    def delete_queryset(self, request, queryset):
        key_ids = list(ApiKey.objects.filter(tenant__in=queryset).values_list("key_id", flat=True))
        super().delete_queryset(request, queryset)
        services.auth_cache_invalidate(key_ids=key_ids)

    @admin.action(description="Suspend selected tenants")
    def suspend(self, request, queryset):
        for tenant in queryset:
            services.tenant_suspend(tenant=tenant)
        self.message_user(request, f"Suspended {len(queryset)} tenant(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tenants")
    def reactivate(self, request, queryset):
        for tenant in queryset:
            services.tenant_reactivate(tenant=tenant)
        self.message_user(request, f"Reactivated {len(queryset)} tenant(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("display", "name", "tenant", "key_status", "scopes", "created_at", "expires_at",
                    "last_used_at")
    list_filter = ("tenant__plan", "tenant", ("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("key_id", "name", "tenant__slug", "last4")
    list_select_related = ("tenant",)
    # secret_hash is deliberately absent from every list, form and readonly field.
    fields = ("tenant", "name", "key_id", "last4", "scopes", "created_at", "expires_at", "revoked_at",
              "last_used_at")
    readonly_fields = ("tenant", "key_id", "last4", "created_at", "revoked_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # issue keys with `manage.py apikey_create` so the plaintext is shown exactly once

    @admin.display(description="status")
    def key_status(self, obj):
        return obj.status_at(timezone.now())

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.auth_cache_invalidate(key_ids=[obj.key_id])  # scopes / expiry may have changed

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        services.auth_cache_invalidate(key_ids=[obj.key_id])

    def delete_queryset(self, request, queryset):
        key_ids = list(queryset.values_list("key_id", flat=True))
        super().delete_queryset(request, queryset)
        services.auth_cache_invalidate(key_ids=key_ids)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for api_key in queryset:
            services.apikey_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(queryset)} key(s).", messages.SUCCESS)

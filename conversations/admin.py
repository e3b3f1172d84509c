"""Operator admin: metadata only. No list, form or detail page shows plaintext or key material.

Conversations and keys are read-only here; destructive key operations (DEK rotation, crypto-shred)
are actions on the "tenant encryption" page and go through lifecycle services.
"""

from django.contrib import admin, messages
from django.db.models import Count
from django.template.response import TemplateResponse

from . import lifecycle
from .models import Conversation, DataKey, TenantEncryption


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    # Title, metadata and system prompt are encrypted: only ids, counts and times are shown.
    list_display = ("id", "tenant", "message_count", "dek", "created_at", "updated_at", "lock_expires_at")
    list_filter = ("tenant",)
    search_fields = ("id", "tenant__slug")
    list_select_related = ("tenant", "dek")
    fields = ("id", "tenant", "dek", "message_count", "created_at", "updated_at", "lock_expires_at")
    readonly_fields = fields


@admin.register(DataKey)
class DataKeyAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "version", "kek_id", "created_at", "rewrapped_at")
    list_filter = ("kek_id",)
    search_fields = ("tenant__slug",)
    list_select_related = ("tenant",)
    fields = ("tenant", "version", "kek_id", "created_at", "rewrapped_at")  # never wrapped_key
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None):
        return False  # destroying a DEK is crypto-shredding: use the tenant encryption actions


@admin.register(TenantEncryption)
class TenantEncryptionAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "status", "key_versions", "conversation_count")
    search_fields = ("slug", "name", "id")
    fields = ("id", "slug", "name", "status")
    readonly_fields = fields
    actions = ["rotate_data_key", "crypto_shred"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_keys=Count("data_keys", distinct=True), n_conversations=Count("conversations", distinct=True))

    def has_delete_permission(self, request, obj=None):
        return False  # plain deletion is the tenants page; here deletion means crypto-shredding

    def has_shred_permission(self, request):
        return request.user.has_perm("tenants.delete_tenant")

    def has_rotate_permission(self, request):
        return request.user.has_perm("tenants.change_tenant")

    @admin.display(description="DEK versions")
    def key_versions(self, obj):
        return obj.n_keys

    @admin.display(description="conversations")
    def conversation_count(self, obj):
        return obj.n_conversations

    @admin.action(description="Rotate data key (re-encrypt conversations)", permissions=["rotate"])
    def rotate_data_key(self, request, queryset):
        for tenant in queryset:
            result = lifecycle.datakey_rotate(tenant_id=tenant.pk, settle_seconds=0)
            self.message_user(request, f"{tenant.slug}: DEK v{result.version}, {result.messages} messages "
                                       f"re-encrypted.", messages.SUCCESS)

    @admin.action(description="Crypto-shred: delete tenant, destroy its keys and conversations",
                  permissions=["shred"])
    def crypto_shred(self, request, queryset):
        if request.POST.get("confirm") != "yes":  # irreversible: ask once more, like Django's delete
            return TemplateResponse(request, "admin/conversations/shred_confirmation.html", {
                **self.admin_site.each_context(request), "title": "Crypto-shred tenants?", "tenants": queryset,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "opts": self.model._meta})
        from audit.actor import Actor
        from tenants.services import tenant_delete

        for tenant in list(queryset):
            # Through the tenants service so the deletion is audited (same transaction) like everywhere else.
            result = tenant_delete(tenant=tenant, confirm_slug=tenant.slug, actor=Actor.from_request(request))
            kept = "" if result.tenant_deleted else "; tenant kept for billing records, suspended"
            self.message_user(request, f"{tenant.slug}: shredded ({result.data_keys} keys destroyed, "
                                       f"{result.conversations} conversations deleted{kept}).", messages.SUCCESS)

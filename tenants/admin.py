"""Operator admin. Every write goes through tenants.services, which invalidates cached auth records
and writes one audit event in the same transaction. Keys are issued on a dedicated page that shows
the plaintext exactly once (no-store response, never in a session, message or log); a resubmitted
form issues nothing (one-time nonce). Deleting a tenant needs its slug typed, and crypto-shreds."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, DecimalField, OuterRef, Q, Subquery, Sum
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.actor import Actor
from tenants import admin_forms, services
from tenants.models import ApiKey, Plan, Tenant

NONCE_SECONDS = 3600


def _actor(request) -> Actor:
    return Actor.from_request(request)


def _adopt(obj, saved) -> None:
    """The admin keeps using its own instance after save_model: give it the saved row's identity."""
    obj.pk = saved.pk
    obj._state.adding, obj._state.db = False, saved._state.db


def _nonce_claim(nonce: str) -> bool:
    return cache.add(f"admin-once:{nonce}", 1, timeout=NONCE_SECONDS)


def _require(request, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


def _key_shown_once(request, admin_site, issued: list, title: str):
    response = TemplateResponse(request, "admin/tenants/apikey/shown_once.html", {
        **admin_site.each_context(request), "title": title, "issued": issued,
        "opts": ApiKey._meta})
    response["Cache-Control"] = "no-store"  # the page holds secrets: no browser or proxy copy
    return response


# --- plans --------------------------------------------------------------------------------------

@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant_count", "rpm", "tpm", "monthly_token_budget", "max_concurrent_requests",
                    "max_tokens_per_request", "weight", "price_per_1k_input_tokens",
                    "price_per_1k_output_tokens", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_tenants=Count("tenants"))

    def get_readonly_fields(self, request, obj=None):
        # A plan's name is its identity in the CLI, invoices and the audit log: fixed once created.
        return (*self.readonly_fields, "name") if obj else self.readonly_fields

    @admin.display(description="tenants", ordering="n_tenants")
    def tenant_count(self, obj):
        return obj.n_tenants

    def has_delete_permission(self, request, obj=None):
        return False  # tenants PROTECT their plan; an unused plan is harmless and keeps history readable

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in form.changed_data}
        if change:
            services.plan_update(plan=obj, actor=_actor(request), **data)
        else:
            fields = {name: form.cleaned_data[name] for name in form.cleaned_data}
            _adopt(obj, services.plan_create(actor=_actor(request), **fields))


# --- tenants ------------------------------------------------------------------------------------

class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("key_id", "name", "last4", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def _dashboard_url(tenant_pk) -> str | None:
    """The tenant's dashboard page, when the dashboard is mounted in this URLconf."""
    slug = Tenant.objects.filter(pk=tenant_pk).values_list("slug", flat=True).first()
    try:
        return reverse("dashboard:tenant", args=[slug]) if slug else None
    except NoReverseMatch:
        return None


def _month_spend_subquery():
    from billing.models import UsageRecord

    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spend = (UsageRecord.objects.filter(tenant=OuterRef("pk"), created_at__gte=start).order_by()
             .values("tenant").annotate(total=Sum("cost")).values("total"))
    return Subquery(spend, output_field=DecimalField(max_digits=24, decimal_places=10))


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "status", "plan", "effective_weight", "active_keys", "month_spend",
                    "created_at")
    list_filter = ("status", "plan")
    search_fields = ("slug", "name", "id")
    list_select_related = ("plan",)
    readonly_fields = ("id", "status", "created_at")
    fields = ("id", "name", "slug", "status", "plan", "weight_override", "rpm_override", "rpm_per_key_override",
              "tpm_override", "monthly_token_budget_override", "max_concurrent_requests_override", "created_at")
    inlines = [ApiKeyInline]
    actions = ["suspend", "reactivate", "change_plan", "change_weight"]
    change_form_template = "admin/tenants/tenant/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)),
            spend=_month_spend_subquery())

    @admin.display(description="weight")
    def effective_weight(self, obj):
        return obj.weight_override if obj.weight_override is not None else obj.plan.weight

    @admin.display(description="active keys", ordering="n_active_keys")
    def active_keys(self, obj):
        return obj.n_active_keys

    @admin.display(description="spend this month", ordering="spend")
    def month_spend(self, obj):
        return f"{obj.spend or 0:.2f}"

    def has_delete_permission(self, request, obj=None):
        return False  # deletion is the typed-confirmation crypto-shred page (delete_tenant_view)

    def save_model(self, request, obj, form, change):
        if change:
            data = {name: form.cleaned_data[name] for name in form.changed_data}
            services.tenant_update(tenant=obj, actor=_actor(request), **data)
        else:
            data = {name: form.cleaned_data[name] for name in form.cleaned_data}
            _adopt(obj, services.tenant_create(actor=_actor(request), **data))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "dashboard_url": _dashboard_url(object_id)}
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [path("<path:object_id>/delete-tenant/", wrap(self.delete_tenant_view),
                     name="tenants_tenant_delete_tenant"),
                path("<path:object_id>/set-status/", wrap(self.set_status_view), name="tenants_tenant_set_status"),
                *super().get_urls()]

    # Actions: each tenant goes through its service (one audit event per tenant actually changed).
    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend(self, request, queryset):
        for tenant in queryset:
            services.tenant_suspend(tenant=tenant, actor=_actor(request))
        self.message_user(request, f"Suspended {len(queryset)} tenant(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tenants", permissions=["change"])
    def reactivate(self, request, queryset):
        for tenant in queryset:
            services.tenant_reactivate(tenant=tenant, actor=_actor(request))
        self.message_user(request, f"Reactivated {len(queryset)} tenant(s).", messages.SUCCESS)

    @admin.action(description="Change plan of selected tenants", permissions=["change"])
    def change_plan(self, request, queryset):
        form = admin_forms.ChangePlanForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_form(request, queryset, form, "change_plan", "Change plan")
        for tenant in queryset:
            services.tenant_change_plan(tenant=tenant, plan=form.cleaned_data["plan"], actor=_actor(request))
        self.message_user(request, f"Moved {len(queryset)} tenant(s) to plan {form.cleaned_data['plan']}.",
                          messages.SUCCESS)

    @admin.action(description="Change fair-share weight of selected tenants", permissions=["change"])
    def change_weight(self, request, queryset):
        form = admin_forms.ChangeWeightForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._action_form(request, queryset, form, "change_weight", "Change fair-share weight")
        for tenant in queryset:
            services.tenant_change_weight(tenant=tenant, weight=form.cleaned_data["weight"], actor=_actor(request))
        self.message_user(request, f"Changed the weight of {len(queryset)} tenant(s).", messages.SUCCESS)

    def _action_form(self, request, queryset, form, action: str, title: str):
        return TemplateResponse(request, "admin/tenants/action_form.html", {
            **self.admin_site.each_context(request), "title": title, "form": form, "objects": queryset,
            "action": action, "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME})

    def set_status_view(self, request, object_id):
        _require(request, "tenants.change_tenant")
        tenant = get_object_or_404(Tenant, pk=object_id)
        if request.method != "POST":
            return redirect(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
        if request.POST.get("status") == Tenant.Status.SUSPENDED:
            services.tenant_suspend(tenant=tenant, actor=_actor(request))
        else:
            services.tenant_reactivate(tenant=tenant, actor=_actor(request))
        self.message_user(request, f"{tenant.slug} is now {tenant.status}.", messages.SUCCESS)
        return redirect(reverse("admin:tenants_tenant_change", args=[tenant.pk]))

    def delete_tenant_view(self, request, object_id):
        _require(request, "tenants.delete_tenant")
        tenant = get_object_or_404(Tenant.objects.select_related("plan"), pk=object_id)
        form = admin_forms.TypedDeleteForm(request.POST or None, tenant=tenant)
        if request.method == "POST" and form.is_valid():
            slug = tenant.slug
            try:
                result = services.tenant_delete(tenant=tenant, confirm_slug=form.cleaned_data["confirm_slug"],
                                                actor=_actor(request))
            except ValidationError as error:
                form.add_error(None, error)
            else:
                kept = ("" if result.tenant_deleted else
                        " It has billing records, so it was kept: suspended, keys revoked.")
                self.message_user(request, f"{slug}: {result.data_keys} data key(s) destroyed, "
                                           f"{result.conversations} conversation(s) deleted.{kept}", messages.SUCCESS)
                return redirect(reverse("admin:tenants_tenant_changelist"))
        return TemplateResponse(request, "admin/tenants/tenant/delete_tenant.html", {
            **self.admin_site.each_context(request), "title": f"Delete tenant {tenant.slug}?", "tenant": tenant,
            "form": form, "opts": self.model._meta, "original": tenant,
            "key_count": tenant.api_keys.count()})


# --- API keys -----------------------------------------------------------------------------------

@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("display", "name", "tenant", "key_status", "scope_list", "created_at", "expires_at",
                    "last_used_at")
    list_filter = ("tenant__plan", "tenant", ("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("key_id", "name", "tenant__slug", "last4")
    list_select_related = ("tenant",)
    # secret_hash is deliberately absent from every list, form and readonly field.
    fields = ("tenant", "name", "key_id", "last4", "scopes", "created_at", "expires_at", "revoked_at",
              "last_used_at")
    readonly_fields = ("tenant", "key_id", "last4", "created_at", "revoked_at", "last_used_at")
    actions = ["revoke", "rotate"]
    change_form_template = "admin/tenants/apikey/change_form.html"
    change_list_template = "admin/tenants/apikey/change_list.html"

    def has_add_permission(self, request):
        return False  # the standard add form would never show the key: use the "Issue API key" page

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: usage records and the audit log keep pointing at the key

    @admin.display(description="status")
    def key_status(self, obj):
        status = obj.status_at(timezone.now())
        colour = {"active": "#1a7f37", "revoked": "#b42318", "expired": "#9a6700"}[status]
        return format_html('<b style="color:{}">{}</b>', colour, status)

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes or [])

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in form.changed_data}
        services.apikey_update(api_key=obj, actor=_actor(request), **data)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [path("issue/", wrap(self.issue_view), name="tenants_apikey_issue"),
                path("<path:object_id>/revoke/", wrap(self.revoke_view), name="tenants_apikey_revoke"),
                path("<path:object_id>/rotate/", wrap(self.rotate_view), name="tenants_apikey_rotate"),
                *super().get_urls()]

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        for api_key in queryset.select_related("tenant"):
            services.apikey_revoke(api_key=api_key, actor=_actor(request))
        self.message_user(request, f"Revoked {len(queryset)} key(s).", messages.SUCCESS)

    @admin.action(description="Rotate selected keys (new keys shown once)", permissions=["change"])
    def rotate(self, request, queryset):
        return self._rotate(request, list(queryset.select_related("tenant")), action="rotate")

    def _rotate(self, request, keys: list, *, action: str | None):
        form = admin_forms.RotateKeysForm(request.POST if "apply" in request.POST else None,
                                          initial={"nonce": admin_forms.new_nonce()})
        if not form.is_valid():
            return TemplateResponse(request, "admin/tenants/action_form.html", {
                **self.admin_site.each_context(request), "title": "Rotate API keys", "form": form,
                "objects": keys, "action": action, "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "intro": "Each key gets a replacement with the same tenant and scopes; the new keys are "
                         "shown once on the next page."})
        if not _nonce_claim(form.cleaned_data["nonce"]):
            return self._already_done(request)
        issued, skipped = [], []
        for api_key in keys:
            try:
                issued.append(services.apikey_rotate(api_key=api_key, grace=form.cleaned_data["grace"],
                                                     actor=_actor(request)))
            except ValidationError:
                skipped.append(api_key.display)
        if skipped:
            self.message_user(request, f"Not rotated (not active): {', '.join(skipped)}.", messages.WARNING)
        return _key_shown_once(request, self.admin_site, issued, "Rotated: copy the new keys now")

    def _already_done(self, request):
        self.message_user(request, "That form was already submitted; its keys were shown once and cannot be "
                                   "shown again. Issue or rotate again if they were lost.", messages.ERROR)
        return redirect(reverse("admin:tenants_apikey_changelist"))

    def issue_view(self, request):
        _require(request, "tenants.add_apikey")
        form = admin_forms.IssueKeyForm(request.POST or None, initial={
            "nonce": admin_forms.new_nonce(), "tenant": request.GET.get("tenant")})
        if request.method == "POST" and form.is_valid():
            if not _nonce_claim(form.cleaned_data["nonce"]):
                return self._already_done(request)
            days = form.cleaned_data["expires_in_days"]
            issued = services.apikey_create(
                tenant=form.cleaned_data["tenant"], name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"], actor=_actor(request),
                expires_at=timezone.now() + timedelta(days=days) if days else None)
            return _key_shown_once(request, self.admin_site, [issued], "API key issued: copy it now")
        return TemplateResponse(request, "admin/tenants/apikey/issue.html", {
            **self.admin_site.each_context(request), "title": "Issue an API key", "form": form,
            "opts": self.model._meta})

    def revoke_view(self, request, object_id):
        _require(request, "tenants.change_apikey")
        api_key = get_object_or_404(ApiKey.objects.select_related("tenant"), pk=object_id)
        if request.method == "POST":
            services.apikey_revoke(api_key=api_key, actor=_actor(request))
            self.message_user(request, f"Revoked {api_key.display}.", messages.SUCCESS)
        return redirect(reverse("admin:tenants_apikey_change", args=[api_key.pk]))

    def rotate_view(self, request, object_id):
        _require(request, "tenants.change_apikey")
        api_key = get_object_or_404(ApiKey.objects.select_related("tenant"), pk=object_id)
        return self._rotate(request, [api_key], action=None)

"""The default admin site: Fairway branding, login lockout and audited logins."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from audit.actor import Actor, client_ip
from audit.models import AuditEvent
from audit.services import audit_record

from . import login_guard


class LockoutAuthenticationForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": "Too many failed login attempts. Try again in %(minutes)d minute(s).",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request)
        remaining = login_guard.login_lock_remaining(username=username, ip=ip)
        if remaining:
            raise ValidationError(self.error_messages["locked_out"], code="locked_out",
                                  params={"minutes": max(1, (remaining + 59) // 60)})
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if error.code in ("invalid_login", "inactive"):
                failure = login_guard.login_failure_record(username=username, ip=ip)
                if failure.locked:
                    audit_record(action=AuditEvent.Action.AUTH_LOCKOUT, target_type="user", target_id=username[:64],
                                 target_repr=username, actor=Actor(kind="anonymous", name="", ip=ip),
                                 changes={"failures": failure.failures})
            raise
        login_guard.login_success_record(username=username, ip=ip)
        return cleaned


class FairwayAdminSite(admin.AdminSite):
    site_header = "Fairway operations"
    site_title = "Fairway admin"
    index_title = "Tenants, keys, usage and audit"
    site_url = "/dashboard/"  # the "View site" link leads operators to the dashboard
    login_form = LockoutAuthenticationForm

    def login(self, request, extra_context=None):
        response = super().login(request, extra_context)
        if request.method == "POST" and response.status_code == 302 and request.user.is_authenticated:
            user = request.user
            audit_record(action=AuditEvent.Action.AUTH_LOGIN, target_type="user", target_id=str(user.pk),
                         target_repr=user.get_username(), actor=Actor.from_request(request))
        return response

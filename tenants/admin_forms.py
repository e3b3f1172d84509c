"""Forms behind the admin's operator actions (issue/rotate keys, plan and weight, typed delete)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

from django import forms

from tenants.models import ALL_SCOPES, Plan, Tenant

GRACE_CHOICES = [("0", "Retire the old key now"), ("3600", "1 hour"), ("86400", "24 hours"), ("604800", "7 days")]


def new_nonce() -> str:
    """One per rendered form: a resubmitted form (reload, double click) must not issue a second key."""
    return secrets.token_urlsafe(16)


class NonceForm(forms.Form):
    nonce = forms.CharField(widget=forms.HiddenInput, max_length=64)


class IssueKeyForm(NonceForm):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.filter(status=Tenant.Status.ACTIVE).order_by("slug"))
    name = forms.CharField(max_length=200, required=False, help_text="A label for operators, e.g. 'prod'.")
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in ALL_SCOPES], initial=list(ALL_SCOPES),
                                       widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, required=False,
                                         help_text="Blank: the key never expires.")


class RotateKeysForm(NonceForm):
    grace = forms.TypedChoiceField(choices=GRACE_CHOICES, initial="86400", coerce=lambda v: timedelta(seconds=int(v)),
                                   help_text="How long the old key keeps working after the new one is issued.")


class ChangePlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.order_by("name"))


class ChangeWeightForm(forms.Form):
    weight = forms.DecimalField(max_digits=8, decimal_places=3, min_value=Decimal("0.001"), required=False,
                                help_text="Fair-share weight; blank: back to the plan's weight.")


class TypedDeleteForm(forms.Form):
    confirm_slug = forms.CharField(label="Type the tenant's slug to confirm", max_length=64)

    def __init__(self, *args, tenant: Tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant

    def clean_confirm_slug(self) -> str:
        value = self.cleaned_data["confirm_slug"].strip()
        if value != self.tenant.slug:
            raise forms.ValidationError("That is not this tenant's slug.")
        return value

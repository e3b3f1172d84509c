"""Helpers shared by the tenants management commands (the leading underscore hides it from manage.py)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenants import selectors
from tenants.models import ALL_SCOPES, Tenant

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90' (seconds), '15m', '12h', '30d', '2w' → timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text or "")
    if not match or int(match[1]) <= 0:
        raise CommandError(f"Invalid duration {text!r}; use e.g. 3600, 15m, 12h, 30d or 2w.")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2] or "s"])


def parse_scopes(text: str | None) -> list[str] | None:
    if not text:
        return None
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise CommandError(f"Unknown scope(s) {', '.join(unknown)}; choose from {', '.join(ALL_SCOPES)}.")
    return scopes


def tenant_by_slug(slug: str) -> Tenant:
    try:
        return selectors.tenant_get_by_slug(slug=slug)
    except Tenant.DoesNotExist:
        raise CommandError(f"No tenant with slug {slug!r}.") from None


@contextmanager
def validation_as_command_error():
    try:
        yield
    except ValidationError as exc:
        raise CommandError("; ".join(exc.messages)) from None

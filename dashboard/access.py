"""Who may see the dashboard: active staff users with a session. Everyone else is turned away."""

from __future__ import annotations

import functools

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse


def is_operator(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


# Our pages load only our own scripts, styles and socket: an injected script tag would not run.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def staff_required(view):
    """Anonymous (an API key is no session, so API clients too) → admin login; non-staff → 403."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_operator(request.user):
            raise PermissionDenied("Operators only.")
        response = view(request, *args, **kwargs)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return wrapper

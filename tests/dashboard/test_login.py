"""Admin login hardening: lockout per username + address, CSRF, audited logins, secure cookies."""

import runpy
from pathlib import Path

import pytest
from django.test import Client

from audit.models import AuditEvent

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/dashboard/"


def _login(client, password, username="ops"):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/dashboard/"})


def test_good_login_reaches_the_dashboard_and_is_audited(client, operator):
    response = _login(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    [event] = AuditEvent.objects.filter(action="auth.login")
    assert event.actor_name == "ops" and event.ip == "127.0.0.1"


def test_lockout_after_repeated_failures_even_with_the_right_password(client, operator, settings):
    settings.FAIRWAY_LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        assert _login(client, "wrong").status_code == 200
    locked = _login(client, PASSWORD)
    assert locked.status_code == 200 and "Too many failed login attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    [event] = AuditEvent.objects.filter(action="auth.lockout")  # once, when the lock started
    assert event.target_repr == "ops" and event.changes == {"failures": 3}
    # Another address is not locked out (an attacker cannot lock the operator out everywhere).
    elsewhere = Client(REMOTE_ADDR="10.1.2.3")
    assert _login(elsewhere, PASSWORD).status_code == 302


def test_lock_expires_with_the_window(client, operator, settings, monkeypatch):
    from dashboard import login_guard

    settings.FAIRWAY_LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        _login(client, "wrong")
    assert login_guard.login_lock_remaining(username="ops", ip="127.0.0.1") > 0
    later = login_guard._now() + settings.FAIRWAY_LOGIN_LOCKOUT_SECONDS + 1
    monkeypatch.setattr(login_guard, "_now", lambda: later)
    assert login_guard.login_lock_remaining(username="ops", ip="127.0.0.1") == 0


def test_many_usernames_from_one_address_lock_the_address(client, operator, settings):
    settings.FAIRWAY_LOGIN_ADDRESS_FAILURE_LIMIT = 4
    for i in range(4):
        _login(client, "wrong", username=f"guess{i}")
    assert "Too many failed" in _login(client, PASSWORD).content.decode()


def test_success_clears_the_failures_of_that_pair(client, operator, settings):
    settings.FAIRWAY_LOGIN_FAILURE_LIMIT = 3
    _login(client, "wrong")
    _login(client, "wrong")
    assert _login(client, PASSWORD).status_code == 302
    client.logout()
    _login(client, "wrong")
    _login(client, "wrong")
    assert _login(client, PASSWORD).status_code == 302


def test_login_form_needs_the_csrf_token(operator):
    strict = Client(enforce_csrf_checks=True)
    assert _login(strict, PASSWORD).status_code == 403


def test_secure_cookies_follow_the_setting(monkeypatch):
    settings_file = Path(__file__).resolve().parents[2] / "config" / "settings.py"
    monkeypatch.setenv("FAIRWAY_SECURE_COOKIES", "1")
    secure = runpy.run_path(str(settings_file))
    assert secure["SESSION_COOKIE_SECURE"] and secure["CSRF_COOKIE_SECURE"]
    assert secure["SESSION_COOKIE_HTTPONLY"] and secure["CSRF_COOKIE_HTTPONLY"]
    assert "django.middleware.csrf.CsrfViewMiddleware" in secure["MIDDLEWARE"]
    monkeypatch.delenv("FAIRWAY_SECURE_COOKIES")
    assert not runpy.run_path(str(settings_file))["SESSION_COOKIE_SECURE"]

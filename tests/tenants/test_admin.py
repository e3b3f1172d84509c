"""Admin pages render and never show a key's hash."""

import pytest

from tenants import services

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.tenants.urls")]


@pytest.mark.parametrize("url", ["/admin/tenants/plan/", "/admin/tenants/tenant/", "/admin/tenants/apikey/"])
def test_changelists_render(admin_client, issued, url):
    response = admin_client.get(url)
    assert response.status_code == 200
    assert issued.api_key.secret_hash not in response.content.decode()


def test_key_and_tenant_change_pages_hide_the_hash(admin_client, issued, tenant):
    for url in (f"/admin/tenants/apikey/{issued.api_key.pk}/change/", f"/admin/tenants/tenant/{tenant.pk}/change/"):
        response = admin_client.get(url)
        assert response.status_code == 200
        content = response.content.decode()
        assert issued.api_key.secret_hash not in content and issued.plaintext not in content


def test_keys_cannot_be_added_in_admin(admin_client, db):
    assert admin_client.get("/admin/tenants/apikey/add/").status_code == 403


def test_revoke_action_goes_through_the_service(admin_client, issued, client):
    assert client.get("/whoami", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 200
    admin_client.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [str(issued.api_key.pk)]})
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None
    assert client.get("/whoami", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 401


def test_suspend_action_invalidates_cached_keys(admin_client, issued, tenant, client):
    assert client.get("/whoami", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 200
    admin_client.post("/admin/tenants/tenant/", {"action": "suspend", "_selected_action": [str(tenant.pk)]})
    assert client.get("/whoami", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 403
    services.tenant_reactivate(tenant=tenant)


def _change(admin_client, api_key, scopes: str):
    return admin_client.post(f"/admin/tenants/apikey/{api_key.pk}/change/",
                             {"name": api_key.name, "scopes": scopes, "expires_at_0": "", "expires_at_1": ""})


def test_admin_scope_edit_is_validated_and_takes_effect_at_once(admin_client, issued, client):
    auth = {"Authorization": f"Bearer {issued.plaintext}"}
    assert client.get("/usage", headers=auth).status_code == 200  # cached with all scopes
    assert _change(admin_client, issued.api_key, '["admin"]').status_code == 200  # form redisplayed
    issued.api_key.refresh_from_db()
    assert "admin" not in issued.api_key.scopes
    assert _change(admin_client, issued.api_key, '["inference"]').status_code == 302
    assert client.get("/usage", headers=auth).json()["error"]["code"] == "insufficient_scope"

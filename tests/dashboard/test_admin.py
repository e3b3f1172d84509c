"""Operator actions in the admin: each goes through a tenants service, is audited exactly once, and
the full API key is shown once and never again. List pages make a fixed number of queries."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from tenants import keys, selectors, services
from tenants.models import ApiKey, Tenant

from .conftest import hours_ago, seed_usage

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"fw_[A-Za-z0-9]+_[A-Za-z0-9]+")


def events(action: str):
    return list(AuditEvent.objects.filter(action=action))


def _shown_keys(response) -> list[str]:
    return re.findall(r'<code class="fw-new-key"[^>]*>([^<]+)</code>', response.content.decode())


def _valid(plaintext: str) -> ApiKey:
    parsed = keys.parse(plaintext)
    api_key = ApiKey.objects.get(key_id=parsed.key_id)
    assert keys.verify(parsed.secret, api_key.secret_hash)
    return api_key


# --- list pages: no N+1 -------------------------------------------------------------------------

LISTS = ["/admin/tenants/tenant/", "/admin/tenants/plan/", "/admin/tenants/apikey/", "/admin/billing/usagerecord/",
         "/admin/billing/invoice/", "/admin/conversations/conversation/", "/admin/audit/auditevent/"]


def _populate(plan, count: int, start: int) -> None:
    from billing.models import Invoice
    from conversations.services import conversation_create

    for i in range(start, start + count):
        tenant = services.tenant_create(name=f"T{i}", slug=f"t{i}", plan=plan)
        issued = services.apikey_create(tenant=tenant, name="k")
        seed_usage(tenant, at=hours_ago(1), count=2, api_key=issued.api_key)
        Invoice.objects.create(tenant=tenant, period_start=timezone.now().date().replace(day=1), number=f"INV-{i}")
        conversation_create(tenant_id=tenant.pk, title="private title")


@pytest.mark.parametrize("url", LISTS)
def test_list_pages_make_the_same_queries_for_2_or_12_rows(op_client, plan, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = op_client.get(url)
        assert response.status_code == 200
        return len(captured)

    _populate(plan, 2, 0)
    few = count()
    _populate(plan, 10, 2)
    assert count() == few, f"{url} makes more queries with more rows (N+1)"


def test_list_pages_stay_small(op_client, plan, django_assert_max_num_queries):
    _populate(plan, 5, 0)
    for url in LISTS:
        with django_assert_max_num_queries(12):
            assert op_client.get(url).status_code == 200


def test_tenant_list_columns_and_search(op_client, acme, globex, acme_key):
    seed_usage(acme, at=hours_ago(0.01), cost="1.25")
    html = op_client.get("/admin/tenants/tenant/?q=acm").content.decode()
    assert "acme" in html and "globex" not in html and "1.25" in html
    assert op_client.get("/admin/tenants/tenant/?status__exact=suspended").content.decode().count("acme") == 0


# --- keys ---------------------------------------------------------------------------------------

def _issue(op_client, tenant, nonce="n-1", **extra):
    return op_client.post("/admin/tenants/apikey/issue/", {"tenant": tenant.pk, "name": "prod", "nonce": nonce,
                                                           "scopes": ["inference", "usage"], **extra})


def test_issue_key_shows_it_once(op_client, acme):
    form = op_client.get(f"/admin/tenants/apikey/issue/?tenant={acme.pk}")
    assert form.status_code == 200 and 'name="nonce"' in form.content.decode()
    response = _issue(op_client, acme)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    [plaintext] = _shown_keys(response)
    api_key = _valid(plaintext)
    assert api_key.tenant == acme and api_key.scopes == ["inference", "usage"]
    [event] = events("apikey.create")
    assert event.actor_name == "ops" and event.ip == "127.0.0.1" and event.target_id == api_key.key_id
    assert plaintext not in str(event.changes) and api_key.secret_hash not in str(event.changes)
    # Never again: not on a resubmission, the key's page, the list, or the tenant's pages.
    again = _issue(op_client, acme)
    assert again.status_code == 302 and ApiKey.objects.count() == 1 and len(events("apikey.create")) == 1
    for url in (f"/admin/tenants/apikey/{api_key.pk}/change/", "/admin/tenants/apikey/",
                f"/admin/tenants/tenant/{acme.pk}/change/", "/dashboard/tenants/acme/", "/admin/audit/auditevent/"):
        assert plaintext not in op_client.get(url).content.decode()


def test_issue_key_with_expiry_and_validation(op_client, acme):
    response = _issue(op_client, acme, expires_in_days=30)
    api_key = _valid(_shown_keys(response)[0])
    assert timedelta(days=29) < api_key.expires_at - timezone.now() <= timedelta(days=30)
    bad = op_client.post("/admin/tenants/apikey/issue/", {"tenant": acme.pk, "nonce": "n-2", "scopes": []})
    assert bad.status_code == 200 and not _shown_keys(bad) and ApiKey.objects.count() == 1


def test_standard_add_page_stays_closed(op_client, db):
    assert op_client.get("/admin/tenants/apikey/add/").status_code == 403


def test_revoke_from_key_page_is_audited_once(op_client, acme_key):
    api_key = acme_key.api_key
    op_client.post(f"/admin/tenants/apikey/{api_key.pk}/revoke/")
    op_client.post(f"/admin/tenants/apikey/{api_key.pk}/revoke/")  # idempotent: nothing more to record
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    [event] = events("apikey.revoke")
    assert event.changes["before"] == {"revoked_at": None} and event.tenant_slug == "acme"
    assert selectors.apikey_auth_record(key_id=api_key.key_id).revoked_at is not None


def test_rotate_action_shows_new_key_once_and_audits_one_rotation(op_client, acme_key):
    old = acme_key.api_key
    data = {"action": "rotate", "_selected_action": [str(old.pk)]}
    confirm = op_client.post("/admin/tenants/apikey/", data)
    assert confirm.status_code == 200 and "Rotate API keys" in confirm.content.decode()
    nonce = re.search(r'name="nonce" value="([^"]+)"', confirm.content.decode())[1]
    done = op_client.post("/admin/tenants/apikey/", {**data, "apply": "1", "grace": "3600", "nonce": nonce})
    [plaintext] = _shown_keys(done)
    new = _valid(plaintext)
    old.refresh_from_db()
    assert new.pk != old.pk and old.expires_at is not None and old.revoked_at is None
    assert abs((old.expires_at - timezone.now()) - timedelta(hours=1)) < timedelta(minutes=1)
    [event] = events("apikey.rotate")
    assert event.changes["replacement_key_id"] == new.key_id and event.changes["grace_seconds"] == 3600
    assert events("apikey.create") == [AuditEvent.objects.get(action="apikey.create", target_id=old.key_id)]
    replay = op_client.post("/admin/tenants/apikey/", {**data, "apply": "1", "grace": "3600", "nonce": nonce})
    assert replay.status_code == 302 and ApiKey.objects.count() == 2


def test_key_edit_is_audited_with_before_and_after(op_client, acme_key):
    api_key = acme_key.api_key
    response = op_client.post(f"/admin/tenants/apikey/{api_key.pk}/change/",
                              {"name": "renamed", "scopes": '["inference"]', "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 302
    [event] = events("apikey.update")
    assert event.changes == {"before": {"name": "prod", "scopes": ["conversations", "inference", "usage"]},
                             "after": {"name": "renamed", "scopes": ["inference"]}}


# --- tenants ------------------------------------------------------------------------------------

def test_suspend_and_reactivate_buttons(op_client, acme, acme_key):
    op_client.post(f"/admin/tenants/tenant/{acme.pk}/set-status/", {"status": "suspended"})
    acme.refresh_from_db()
    assert acme.status == "suspended" and not selectors.apikey_auth_record(key_id=acme_key.api_key.key_id).tenant_active
    op_client.post(f"/admin/tenants/tenant/{acme.pk}/set-status/", {"status": "suspended"})  # no change
    op_client.post(f"/admin/tenants/tenant/{acme.pk}/set-status/", {"status": "active"})
    acme.refresh_from_db()
    assert acme.status == "active"
    [suspended] = events("tenant.suspend")
    [reactivated] = events("tenant.reactivate")
    assert suspended.changes == {"before": {"status": "active"}, "after": {"status": "suspended"}}
    assert reactivated.actor_name == "ops"


def test_change_plan_and_weight_actions(op_client, acme, globex, plan):
    other = services.plan_create(name="enterprise", rpm=5000, weight="4")
    selected = {"_selected_action": [str(acme.pk), str(globex.pk)]}
    form = op_client.post("/admin/tenants/tenant/", {"action": "change_plan", **selected})
    assert form.status_code == 200 and "enterprise" in form.content.decode()
    op_client.post("/admin/tenants/tenant/", {"action": "change_plan", **selected, "apply": "1", "plan": other.pk})
    assert set(Tenant.objects.values_list("plan__name", flat=True)) == {"enterprise"}
    assert {e.tenant_slug for e in events("tenant.change_plan")} == {"acme", "globex"}
    assert events("tenant.change_plan")[0].changes["after"] == {"plan": "enterprise"}
    op_client.post("/admin/tenants/tenant/", {"action": "change_weight", "_selected_action": [str(acme.pk)],
                                              "apply": "1", "weight": "7.5"})
    issued = services.apikey_create(tenant=acme)
    assert selectors.apikey_auth_record(key_id=issued.api_key.key_id).plan.weight == 7.5
    [event] = events("tenant.change_weight")
    assert event.changes == {"before": {"weight_override": None}, "after": {"weight_override": "7.5"}}


def test_tenant_form_edit_records_limit_changes(op_client, acme):
    response = op_client.post(f"/admin/tenants/tenant/{acme.pk}/change/", {
        "name": "Acme Corp", "slug": "acme", "plan": acme.plan_id, "rpm_override": "42", "weight_override": "",
        "rpm_per_key_override": "", "tpm_override": "", "monthly_token_budget_override": "",
        "max_concurrent_requests_override": "", "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    [event] = events("tenant.update")
    assert event.changes == {"before": {"rpm_override": None}, "after": {"rpm_override": 42}}


def test_tenant_and_plan_created_in_admin_are_audited(op_client, plan):
    response = op_client.post("/admin/tenants/plan/add/", {
        "name": "starter", "rpm": 10, "tpm": 1000, "monthly_token_budget": 10000, "max_concurrent_requests": 1,
        "max_tokens_per_request": 256, "weight": "1", "price_per_1k_input_tokens": "0",
        "price_per_1k_output_tokens": "0"})
    assert response.status_code == 302
    starter = services.selectors.plan_get(name="starter")
    response = op_client.post("/admin/tenants/tenant/add/", {
        "name": "New Co", "slug": "newco", "plan": starter.pk, "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0"})
    assert response.status_code == 302
    assert [e.target_repr for e in events("plan.create")] == ["starter", "pro"]
    assert events("tenant.create")[0].actor_name == "ops"


def test_delete_needs_the_typed_slug_and_crypto_shreds(op_client, acme, acme_key):
    from conversations.models import Conversation, DataKey
    from conversations.services import conversation_create

    conversation_create(tenant_id=acme.pk, title="secret plans")
    url = f"/admin/tenants/tenant/{acme.pk}/delete-tenant/"
    assert op_client.get(url).status_code == 200
    wrong = op_client.post(url, {"confirm_slug": "acm"})
    assert wrong.status_code == 200 and Tenant.objects.filter(pk=acme.pk).exists() and not events("tenant.delete")
    done = op_client.post(url, {"confirm_slug": "acme"})
    assert done.status_code == 302
    assert not Tenant.objects.filter(pk=acme.pk).exists()
    assert not Conversation.objects.filter(tenant_id=acme.pk).exists() and not DataKey.objects.exists()
    [event] = events("tenant.delete")
    assert event.changes["tenant_deleted"] is True and event.changes["data_keys_destroyed"] == 1
    assert event.tenant_slug == "acme" and event.actor_name == "ops"
    assert selectors.apikey_auth_record(key_id=acme_key.api_key.key_id) is None


def test_delete_keeps_a_tenant_with_billing_records_suspended(op_client, acme, acme_key):
    seed_usage(acme, at=hours_ago(1), api_key=acme_key.api_key)
    op_client.post(f"/admin/tenants/tenant/{acme.pk}/delete-tenant/", {"confirm_slug": "acme"})
    acme.refresh_from_db()
    acme_key.api_key.refresh_from_db()
    assert acme.status == "suspended" and acme_key.api_key.revoked_at is not None
    [event] = events("tenant.delete")
    assert event.changes["tenant_deleted"] is False
    # The nested actions of the shred service are the operator's too (acting_as).
    assert [e.actor_name for e in events("tenant.suspend") + events("apikey.revoke")] == ["ops", "ops"]


def test_plain_delete_is_not_offered(op_client, acme):
    assert op_client.get(f"/admin/tenants/tenant/{acme.pk}/delete/").status_code == 403
    html = op_client.get("/admin/tenants/tenant/").content.decode()
    assert "delete_selected" not in html


def test_delete_needs_the_delete_permission(client, django_user_model, acme):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_tenant", "change_tenant"]))
    client.force_login(user)
    assert client.post(f"/admin/tenants/tenant/{acme.pk}/delete-tenant/", {"confirm_slug": "acme"}).status_code == 403
    assert Tenant.objects.filter(pk=acme.pk).exists()

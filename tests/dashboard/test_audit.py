"""The audit log: one event per action, in the action's transaction, append-only, read-only admin."""

import pytest
from django.db import connection, transaction

from audit import services as audit_services
from audit.actor import Actor, acting_as
from audit.models import AppendOnlyError, AuditEvent
from tenants import services

pytestmark = pytest.mark.django_db

OPERATOR = Actor(kind="user", name="alice", user_id=7, ip="10.0.0.9", request_id="req_abc")


def test_each_service_action_is_recorded_once_with_who_and_where(acme, plan):
    issued = services.apikey_create(tenant=acme, name="ci", actor=OPERATOR)
    services.apikey_update(api_key=issued.api_key, name="ci-2", actor=OPERATOR)
    rotated = services.apikey_rotate(api_key=issued.api_key, actor=OPERATOR)
    services.apikey_revoke(api_key=rotated.api_key, actor=OPERATOR)
    services.tenant_suspend(tenant=acme, actor=OPERATOR)
    services.tenant_reactivate(tenant=acme, actor=OPERATOR)
    services.tenant_change_weight(tenant=acme, weight="3", actor=OPERATOR)
    services.plan_update(plan=plan, rpm=601, actor=OPERATOR)
    actions = list(AuditEvent.objects.filter(actor_name="alice").order_by("id").values_list("action", flat=True))
    assert actions == ["apikey.create", "apikey.update", "apikey.rotate", "apikey.revoke", "tenant.suspend",
                       "tenant.reactivate", "tenant.change_weight", "plan.update"]
    event = AuditEvent.objects.get(action="plan.update")
    assert (event.ip, event.request_id, event.actor_user_id) == ("10.0.0.9", "req_abc", 7)
    assert event.changes == {"before": {"rpm": 600}, "after": {"rpm": 601}}


def test_no_change_means_no_event(acme, acme_key, plan):
    before = AuditEvent.objects.count()
    services.tenant_reactivate(tenant=acme)  # already active
    services.plan_update(plan=plan, rpm=plan.rpm)
    services.apikey_update(api_key=acme_key.api_key, name=acme_key.api_key.name)
    services.apikey_revoke(api_key=acme_key.api_key)
    services.apikey_revoke(api_key=acme_key.api_key)
    assert AuditEvent.objects.count() == before + 1  # just the one revoke


def test_without_an_actor_the_acting_as_actor_or_system_is_recorded(acme):
    services.tenant_suspend(tenant=acme)
    with acting_as(OPERATOR):
        services.tenant_reactivate(tenant=acme)
    assert AuditEvent.objects.get(action="tenant.suspend").actor_kind == "system"
    assert AuditEvent.objects.get(action="tenant.reactivate").actor_name == "alice"


def test_action_and_event_commit_or_roll_back_together(acme, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr("tenants.services.audit_record", broken)
    with pytest.raises(RuntimeError):
        services.tenant_suspend(tenant=acme, actor=OPERATOR)
    acme.refresh_from_db()
    assert acme.status == "active"  # no action without its record
    monkeypatch.undo()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.tenant_suspend(tenant=acme, actor=OPERATOR)
        raise RuntimeError("the caller's transaction fails later")
    assert not AuditEvent.objects.filter(action="tenant.suspend").exists()  # no record without its action


def test_events_cannot_be_changed_or_deleted_through_the_orm(acme):
    event = services.tenant_suspend(tenant=acme) and AuditEvent.objects.get(action="tenant.suspend")
    event.target_repr = "forged"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(target_repr="forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's")
def test_postgresql_refuses_update_and_delete_in_sql(acme):
    from django.db import InternalError, ProgrammingError

    services.tenant_suspend(tenant=acme)
    for sql in ("UPDATE audit_auditevent SET target_repr = 'x'", "DELETE FROM audit_auditevent"):
        with pytest.raises((InternalError, ProgrammingError)), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditEvent.objects.filter(action="tenant.suspend").exists()


def test_secrets_never_reach_the_log(acme):
    issued = services.apikey_create(tenant=acme, actor=OPERATOR)
    stored = str(list(AuditEvent.objects.values()))
    assert issued.plaintext not in stored and issued.api_key.secret_hash not in stored


def test_admin_is_read_only_and_filterable(op_client, acme, acme_key):
    services.tenant_suspend(tenant=acme, actor=OPERATOR)
    event = AuditEvent.objects.get(action="tenant.suspend")
    listing = op_client.get("/admin/audit/auditevent/?action__exact=tenant.suspend")
    html = listing.content.decode()
    results = html.split("<tbody>")[1].split("</tbody>")[0]
    assert listing.status_code == 200 and "10.0.0.9" in results and "apikey.create" not in results
    assert "active → suspended" in html
    assert op_client.get("/admin/audit/auditevent/?q=acme").status_code == 200
    detail = op_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert detail.status_code == 200 and 'type="submit"' not in detail.content.decode().split('id="content-main"')[1]
    assert op_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert op_client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    op_client.post("/admin/audit/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk]})
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_audit_record_serialises_decimals_and_datetimes():
    from datetime import datetime, timezone
    from decimal import Decimal

    event = audit_services.audit_record(action="plan.update", target_type="plan", target_id="1", target_repr="p",
                                        changes={"after": {"weight": Decimal("2.5"),
                                                           "at": datetime(2030, 1, 1, tzinfo=timezone.utc)}})
    event.refresh_from_db()
    assert event.changes == {"after": {"weight": "2.5", "at": "2030-01-01T00:00:00Z"}}

"""Services and selectors: plans, tenants, key lifecycle, coarse last_used."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from tenants import authcache, keys, selectors, services
from tenants.models import ALL_SCOPES, ApiKey, Plan, Tenant

pytestmark = pytest.mark.django_db


def test_plan_create_stores_limits_and_prices(plan):
    plan.refresh_from_db()
    assert (plan.rpm, plan.tpm, plan.max_tokens_per_request) == (10, 1000, 256)
    assert plan.weight == Decimal("2.5")
    assert plan.price_per_1k_output_tokens == Decimal("0.30")


@pytest.mark.parametrize("bad", [{"weight": 0}, {"weight": "-1"}, {"rpm": 0}, {"max_tokens_per_request": 0},
                                 {"price_per_1k_input_tokens": "-0.01"}])
def test_plan_create_rejects_non_positive_limits(bad):
    with pytest.raises(ValidationError):
        services.plan_create(name="bad", **bad)
    assert not Plan.objects.filter(name="bad").exists()


def test_plan_get_or_create_is_idempotent():
    first, created = services.plan_get_or_create(name="demo", rpm=5)
    again, created_again = services.plan_get_or_create(name="demo", rpm=99)
    assert created and not created_again and first.pk == again.pk and again.rpm == 5


def test_plan_update_rejects_unknown_fields(plan):
    with pytest.raises(ValidationError):
        services.plan_update(plan=plan, name="renamed")


def test_plan_is_protected_while_tenants_use_it(tenant, plan):
    with pytest.raises(ProtectedError):
        plan.delete()


def test_tenant_create_suspend_reactivate(tenant):
    assert tenant.status == Tenant.Status.ACTIVE
    services.tenant_suspend(tenant=tenant)
    assert selectors.tenant_get_by_slug(slug="acme").status == Tenant.Status.SUSPENDED
    services.tenant_reactivate(tenant=tenant)
    assert selectors.tenant_get(tenant_id=tenant.pk).status == Tenant.Status.ACTIVE


def test_tenant_create_rejects_duplicate_slug(tenant, plan):
    with pytest.raises(ValidationError):
        services.tenant_create(name="Other", slug="acme", plan=plan)


def test_apikey_create_stores_only_the_hash(issued):
    api_key, plaintext = issued
    parsed = keys.parse(plaintext)
    row = ApiKey.objects.get(pk=api_key.pk)
    assert row.key_id == parsed.key_id and row.last4 == plaintext[-4:]
    assert row.secret_hash == keys.hash_secret(parsed.secret)
    stored = " ".join(str(v) for v in ApiKey.objects.filter(pk=api_key.pk).values().get().values())
    assert parsed.secret not in stored and plaintext not in stored
    assert sorted(row.scopes) == sorted(ALL_SCOPES)  # all scopes by default


def test_issued_key_repr_hides_the_plaintext(issued):
    assert issued.plaintext not in repr(issued) and issued.plaintext not in str(issued)
    assert keys.parse(issued.plaintext).secret not in repr(issued.api_key) + str(issued.api_key)


@pytest.mark.parametrize("scopes", [["inference", "admin"], []])
def test_apikey_create_rejects_bad_scopes(tenant, scopes):
    with pytest.raises(ValidationError):
        services.apikey_create(tenant=tenant, scopes=scopes)


def test_apikey_create_rejects_past_expiry(tenant, clock):
    with pytest.raises(ValidationError):
        services.apikey_create(tenant=tenant, expires_at=clock.now)


def test_apikey_revoke_is_idempotent(issued, clock):
    first = clock.now
    services.apikey_revoke(api_key=issued.api_key)
    clock.advance(hours=1)
    api_key = services.apikey_revoke(api_key=issued.api_key)
    assert api_key.revoked_at == first and api_key.status_at(clock.now) == "revoked"


def test_apikey_rotate_keeps_old_key_until_grace_ends(issued, clock):
    old = issued.api_key
    new, plaintext = services.apikey_rotate(api_key=old, grace=timedelta(hours=2))
    old.refresh_from_db()
    assert old.expires_at == clock.now + timedelta(hours=2)
    assert new.tenant_id == old.tenant_id and new.scopes == old.scopes and new.name == old.name
    assert keys.parse(plaintext).key_id == new.key_id != old.key_id
    assert old.status_at(clock.now + timedelta(hours=1, minutes=59)) == "active"
    assert old.status_at(clock.now + timedelta(hours=2)) == "expired"


def test_apikey_rotate_default_grace_is_24h(issued, clock):
    services.apikey_rotate(api_key=issued.api_key)
    issued.api_key.refresh_from_db()
    assert issued.api_key.expires_at == clock.now + timedelta(hours=24)


def test_apikey_rotate_keeps_an_earlier_expiry(tenant, clock):
    api_key, _ = services.apikey_create(tenant=tenant, expires_at=clock.now + timedelta(minutes=5))
    services.apikey_rotate(api_key=api_key, grace=timedelta(days=1))
    api_key.refresh_from_db()
    assert api_key.expires_at == clock.now + timedelta(minutes=5)


def test_apikey_rotate_refuses_revoked_key(issued):
    services.apikey_revoke(api_key=issued.api_key)
    with pytest.raises(ValidationError):
        services.apikey_rotate(api_key=issued.api_key)


def test_touch_last_used_writes_at_most_once_per_interval(issued, clock, settings, django_assert_num_queries):
    settings.FAIRWAY_KEY_LAST_USED_INTERVAL = 300
    key_id = issued.api_key.pk
    with django_assert_num_queries(1):
        assert services.apikey_touch_last_used(api_key_id=key_id) is True
    first = clock.now
    clock.advance(seconds=100)
    with django_assert_num_queries(0):  # the cache guard stops it before the database
        for _ in range(5):
            assert services.apikey_touch_last_used(api_key_id=key_id) is False
    assert ApiKey.objects.get(pk=key_id).last_used_at == first
    clock.advance(seconds=200)  # a new interval: one write again
    assert services.apikey_touch_last_used(api_key_id=key_id) is True
    assert ApiKey.objects.get(pk=key_id).last_used_at == clock.now


def test_touch_last_used_guard_holds_across_worker_processes(issued, clock, monkeypatch,
                                                             django_assert_num_queries):
    assert services.apikey_touch_last_used(api_key_id=issued.api_key.pk) is True
    monkeypatch.setattr(authcache, "_tried_guards", {})  # another worker: no local memo, same cache
    clock.advance(seconds=1)
    with django_assert_num_queries(0):
        assert services.apikey_touch_last_used(api_key_id=issued.api_key.pk) is False


def test_touch_last_used_update_is_conditional(issued, clock, settings, django_assert_num_queries):
    # Even when the cache guard lets a request through (e.g. a cold cache or a fresh bucket right
    # after a write), the UPDATE itself refuses to move last_used_at by less than the interval.
    settings.FAIRWAY_KEY_LAST_USED_INTERVAL = 300
    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used_at=clock.now - timedelta(seconds=10))
    with django_assert_num_queries(1):
        assert services.apikey_touch_last_used(api_key_id=issued.api_key.pk) is False


def test_apikey_list_for_tenant_only_lists_that_tenant(issued, plan):
    other = services.tenant_create(name="Other", slug="other", plan=plan)
    services.apikey_create(tenant=other, name="theirs")
    names = [k.name for k in selectors.apikey_list_for_tenant(tenant=issued.api_key.tenant)]
    assert names == ["ci"]

"""Management commands: thin wrappers over services; secrets shown once, never listed."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants import keys, selectors
from tenants.models import ApiKey, Plan, Tenant

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_plan_and_tenant_create():
    run("plan_create", "gold", "--rpm", "100", "--weight", "3", "--price-input", "0.5")
    plan = Plan.objects.get(name="gold")
    assert (plan.rpm, str(plan.weight), str(plan.price_per_1k_input_tokens)) == (100, "3.000", "0.500000")
    out, _ = run("tenant_create", "acme", "--plan", "gold", "--name", "Acme Inc")
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme Inc" and tenant.plan == plan and "Created" in out


def test_create_commands_fail_cleanly_and_support_exist_ok():
    run("plan_create", "gold")
    with pytest.raises(CommandError):
        run("plan_create", "gold")
    assert "Exists" in run("plan_create", "gold", "--exist-ok")[0]
    with pytest.raises(CommandError):
        run("plan_create", "bad", "--weight", "0")
    with pytest.raises(CommandError):
        run("tenant_create", "acme", "--plan", "missing")
    run("tenant_create", "acme", "--plan", "gold")
    with pytest.raises(CommandError):
        run("tenant_create", "acme", "--plan", "gold")
    assert "Exists" in run("tenant_create", "acme", "--plan", "gold", "--exist-ok")[0]


def test_apikey_create_prints_the_key_exactly_once(tenant):
    out, err = run("apikey_create", "--tenant", "acme", "--name", "ci", "--scopes", "inference,usage",
                   "--expires-in", "30d")
    plaintext = out.strip().splitlines()[-1]
    parsed = keys.parse(plaintext)
    assert (out + err).count(plaintext) == 1 and (out + err).count(parsed.secret) == 1
    api_key = ApiKey.objects.get(key_id=parsed.key_id)
    assert api_key.name == "ci" and api_key.scopes == ["inference", "usage"] and api_key.expires_at is not None
    assert keys.verify(parsed.secret, api_key.secret_hash)


@pytest.mark.parametrize("args", [["--tenant", "nope"], ["--tenant", "acme", "--scopes", "admin"],
                                  ["--tenant", "acme", "--expires-in", "soon"]])
def test_apikey_create_rejects_bad_input(tenant, args):
    with pytest.raises(CommandError):
        run("apikey_create", *args)
    assert not ApiKey.objects.exists()


def test_apikey_list_never_shows_secrets(tenant):
    out, _ = run("apikey_create", "--tenant", "acme", "--name", "ci")
    plaintext = out.strip().splitlines()[-1]
    api_key = selectors.apikey_get(key_id=keys.parse(plaintext).key_id)
    listing, _ = run("apikey_list", "--tenant", "acme")
    assert api_key.key_id in listing and api_key.last4 in listing and "active" in listing and "never" in listing
    assert plaintext not in listing and keys.parse(plaintext).secret not in listing
    assert api_key.secret_hash not in listing


def test_apikey_revoke_by_key_id(issued):
    out, _ = run("apikey_revoke", issued.api_key.key_id)
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None and "Revoked" in out
    assert "revoked" in run("apikey_list", "--tenant", "acme")[0]
    with pytest.raises(CommandError):
        run("apikey_revoke", "doesnotexist")


def test_demo_setup_is_idempotent_and_prints_only_the_key_last(client, settings):
    first, _ = run("demo_setup")
    second, _ = run("demo_setup")
    assert Plan.objects.filter(name="demo").count() == 1 and Tenant.objects.filter(slug="demo").count() == 1
    key_one, key_two = first.strip().splitlines()[-1], second.strip().splitlines()[-1]
    assert key_one != key_two and first.strip() == key_one  # stdout holds nothing but the key
    assert ApiKey.objects.filter(tenant__slug="demo").count() == 2
    settings.ROOT_URLCONF = "tests.tenants.urls"
    response = client.get("/whoami", headers={"Authorization": f"Bearer {key_two}"})
    assert response.status_code == 200 and response.json()["tenant_slug"] == "demo"

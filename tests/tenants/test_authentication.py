"""ApiKeyAuthentication / authenticate_request through real DRF and Django views (tests/tenants/urls.py)."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from gateway.errors import ApiError
from tenants import authentication, keys, services
from tenants.models import ApiKey
from tenants.authentication import require_scope
from tests.support.servers import release_db_thread

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.tenants.urls")]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def error_of(response) -> dict:
    return response.json()["error"]


def typo(plaintext: str) -> str:
    index = len(plaintext) - 10  # inside the secret
    return plaintext[:index] + ("A" if plaintext[index] != "A" else "B") + plaintext[index + 1:]


def foreign_key(key_id: str | None = None) -> str:
    """A well-formed key with a valid checksum that was never issued (or a wrong secret for key_id)."""
    generated = keys.generate()
    body = f"fw_{key_id or generated.key_id}_{generated.secret}"
    return body + keys.checksum(body)


def assert_invalid_key(response, presented: str | None = None) -> dict:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer realm="fairway"'
    error = error_of(response)
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    if presented:  # never echo the key, nor its secret part
        content = response.content.decode()
        assert presented not in content and presented[16:-6] not in content
    return error


# --- success ------------------------------------------------------------------------------------

def test_valid_key_yields_principal(client, issued, plan):
    response = client.get("/whoami", headers=bearer(issued.plaintext))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tenant_slug"] == "acme" and body["key_id"] == issued.api_key.key_id
    assert body["api_key_id"] == str(issued.api_key.pk) and body["tenant_id"] == str(plan.tenants.get().pk)
    assert body["scopes"] == ["conversations", "inference", "usage"]
    assert body["rpm"] == 10 and body["weight"] == 2.5
    assert issued.plaintext not in response.content.decode()


@pytest.fixture
def committed(transactional_db):
    """Async authentication looks keys up on the gateway's database threads (config/dbthread.py),
    whose connections see only committed rows: these tests commit, and close those threads after."""
    yield
    release_db_thread()


@pytest.mark.parametrize("path", ["/plain", "/async"])
def test_plain_and_async_django_views(committed, client, issued, path):
    ok = client.get(path, headers=bearer(issued.plaintext))
    assert ok.status_code == 200 and ok.json()["tenant_slug"] == "acme"
    missing = client.get(path)
    assert_invalid_key(missing)
    bad = client.get(path, headers=bearer(typo(issued.plaintext)))
    assert_invalid_key(bad, typo(issued.plaintext))


def test_scheme_is_case_insensitive(client, issued):
    assert client.get("/whoami", headers={"Authorization": f"bearer  {issued.plaintext} "}).status_code == 200


def test_principal_snapshot_is_frozen_and_complete(rf, issued, clock):
    principal = authentication.authenticate_request(rf.get("/", headers=bearer(issued.plaintext)))
    assert principal.is_authenticated and principal.has_scope("usage")
    assert principal.plan.max_tokens_per_request == 256 and principal.plan.max_concurrent_requests == 2
    assert str(principal.plan.price_per_1k_input_tokens) == "0.100000"
    with pytest.raises(AttributeError):
        principal.tenant_slug = "other"  # frozen
    assert issued.plaintext not in repr(principal)


# --- failures -----------------------------------------------------------------------------------

def test_missing_header_is_401(client, db):
    assert_invalid_key(client.get("/whoami"))  # DRF view: IsAuthenticated answers, still 401 invalid_api_key
    assert "Authorization" in assert_invalid_key(client.get("/plain"))["message"]


def test_allow_any_view_works_without_a_key(client, db):
    assert client.get("/open").json() == {"user": None}


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-key",
                                    "Bearer fw_abc_def", "Token fw_abcdefghijkl_" + "x" * 38])
def test_malformed_header_is_401_without_queries(client, db, header, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/whoami", headers={"Authorization": header})
    assert_invalid_key(response)


def test_checksum_typo_is_401_without_queries(client, issued, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/whoami", headers=bearer(typo(issued.plaintext)))
    assert "checksum" in assert_invalid_key(response, typo(issued.plaintext))["message"]


def test_unknown_key_and_wrong_secret_look_identical(client, issued):
    unknown = client.get("/whoami", headers=bearer(foreign_key()))
    wrong_secret = foreign_key(issued.api_key.key_id)
    wrong = client.get("/whoami", headers=bearer(wrong_secret))
    assert_invalid_key(unknown)
    assert_invalid_key(wrong, wrong_secret)
    assert unknown.content == wrong.content


def test_wrong_secret_is_rejected_even_when_the_record_is_cached(client, issued, django_assert_num_queries):
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200  # warms the cache
    with django_assert_num_queries(0):
        response = client.get("/whoami", headers=bearer(foreign_key(issued.api_key.key_id)))
    assert_invalid_key(response)


def test_revoked_key_is_401_immediately_despite_cache(client, issued):
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200  # cached now
    services.apikey_revoke(api_key=issued.api_key)
    error = assert_invalid_key(client.get("/whoami", headers=bearer(issued.plaintext)), issued.plaintext)
    assert "revoked" in error["message"]


def test_expired_key_is_401(client, tenant, clock):
    api_key, plaintext = services.apikey_create(tenant=tenant, expires_at=clock.now + timedelta(hours=1))
    assert client.get("/whoami", headers=bearer(plaintext)).status_code == 200
    clock.advance(hours=1)
    assert "expired" in assert_invalid_key(client.get("/whoami", headers=bearer(plaintext)), plaintext)["message"]


@pytest.mark.parametrize("param", ["api_key", "key", "access_token"])
def test_key_in_query_string_is_refused_even_if_valid(client, issued, param):
    alone = client.get(f"/whoami?{param}={issued.plaintext}")
    with_header = client.get(f"/whoami?{param}={issued.plaintext}", headers=bearer(issued.plaintext))
    plain = client.get(f"/plain?{param}={issued.plaintext}", headers=bearer(issued.plaintext))
    for response in (alone, with_header, plain):
        assert "URL" in assert_invalid_key(response, issued.plaintext)["message"]


def test_suspended_tenant_is_403_and_reactivation_restores(client, issued, tenant):
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200  # cached now
    services.tenant_suspend(tenant=tenant)
    response = client.get("/whoami", headers=bearer(issued.plaintext))
    assert response.status_code == 403
    assert error_of(response)["code"] == "tenant_suspended" and error_of(response)["type"] == "permission_error"
    services.tenant_reactivate(tenant=tenant)
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200


def test_missing_scope_is_403(client, tenant, clock):
    _, inference_only = services.apikey_create(tenant=tenant, scopes=["inference"])
    response = client.get("/usage", headers=bearer(inference_only))
    assert response.status_code == 403 and error_of(response)["code"] == "insufficient_scope"
    _, usage = services.apikey_create(tenant=tenant, scopes=["usage"])
    assert client.get("/usage", headers=bearer(usage)).status_code == 200


def test_require_scope_helper(rf, tenant, clock):
    _, plaintext = services.apikey_create(tenant=tenant, scopes=["conversations"])
    principal = authentication.authenticate_request(rf.get("/", headers=bearer(plaintext)))
    require_scope(principal, "conversations")
    with pytest.raises(ApiError) as info:
        require_scope(principal, "inference")
    assert (info.value.status, info.value.code) == (403, "insufficient_scope")


# --- cache and plan changes ---------------------------------------------------------------------

def test_cached_record_means_no_queries_on_repeat(client, issued, django_assert_num_queries):
    with django_assert_num_queries(2):  # record load + the first last_used write
        assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200
    with django_assert_num_queries(0):
        for _ in range(3):
            assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200


def test_plan_change_reaches_cached_principals(client, issued, plan):
    assert client.get("/whoami", headers=bearer(issued.plaintext)).json()["rpm"] == 10
    services.plan_update(plan=plan, rpm=99)
    assert client.get("/whoami", headers=bearer(issued.plaintext)).json()["rpm"] == 99
    bigger = services.plan_create(name="bigger", rpm=500)
    services.tenant_change_plan(tenant=issued.api_key.tenant, plan=bigger)
    assert client.get("/whoami", headers=bearer(issued.plaintext)).json()["rpm"] == 500


def test_rotation_old_key_works_until_cutoff(client, issued, clock):
    new, new_plaintext = services.apikey_rotate(api_key=issued.api_key, grace=timedelta(minutes=30))
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200
    assert client.get("/whoami", headers=bearer(new_plaintext)).json()["key_id"] == new.key_id
    clock.advance(minutes=30)
    assert_invalid_key(client.get("/whoami", headers=bearer(issued.plaintext)))
    assert client.get("/whoami", headers=bearer(new_plaintext)).status_code == 200


def test_immediate_rotation(client, issued):
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200  # cached now
    _, new_plaintext = services.apikey_rotate(api_key=issued.api_key, grace=timedelta(0))
    assert_invalid_key(client.get("/whoami", headers=bearer(issued.plaintext)))
    assert client.get("/whoami", headers=bearer(new_plaintext)).status_code == 200


def test_last_used_is_touched_coarsely(client, issued, clock, settings):
    settings.FAIRWAY_KEY_LAST_USED_INTERVAL = 60
    client.get("/whoami", headers=bearer(issued.plaintext))
    first = clock.now
    clock.advance(seconds=30)
    client.get("/whoami", headers=bearer(issued.plaintext))
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at == first
    clock.advance(seconds=31)
    client.get("/whoami", headers=bearer(issued.plaintext))
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at == clock.now


# --- failure slowdown ---------------------------------------------------------------------------

@override_settings(FAIRWAY_AUTH_FAILURE_LIMIT=3, FAIRWAY_AUTH_FAILURE_WINDOW=60)
def test_repeated_failures_from_one_address_are_slowed(client, issued, clock, django_assert_num_queries):
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    for _ in range(3):
        assert_invalid_key(client.get("/whoami", headers=bearer(foreign_key()), **attacker))
    with django_assert_num_queries(0):  # refused before the key is even looked up
        blocked = client.get("/whoami", headers=bearer(issued.plaintext), **attacker)
    assert blocked.status_code == 429 and error_of(blocked)["code"] == "rate_limit_exceeded"
    assert blocked["Retry-After"] == "50"  # clock sits 10 s into its 60 s window
    assert client.get("/plain", headers=bearer(issued.plaintext), **attacker).status_code == 429
    # Other addresses are unaffected; the blocked one recovers in the next window.
    assert client.get("/whoami", headers=bearer(issued.plaintext), REMOTE_ADDR="198.51.100.7").status_code == 200
    clock.advance(seconds=50)
    assert client.get("/whoami", headers=bearer(issued.plaintext), **attacker).status_code == 200


@override_settings(FAIRWAY_AUTH_FAILURE_LIMIT=2)
def test_typos_count_but_missing_header_and_suspension_do_not(client, issued, tenant):
    for _ in range(5):
        client.get("/plain")  # no credentials: not an attempt
    services.tenant_suspend(tenant=tenant)
    for _ in range(5):
        assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 403  # valid key
    services.tenant_reactivate(tenant=tenant)
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 200
    client.get("/whoami", headers=bearer(typo(issued.plaintext)))
    client.get("/whoami", headers=bearer("garbage"))
    assert client.get("/whoami", headers=bearer(issued.plaintext)).status_code == 429


# --- async --------------------------------------------------------------------------------------

def test_aauthenticate_request_direct(committed, rf, issued, clock):
    aauth = async_to_sync(authentication.aauthenticate_request)
    principal = aauth(rf.get("/", headers=bearer(issued.plaintext)))
    assert principal.tenant_slug == "acme" and principal.key_id == issued.api_key.key_id
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at == clock.now
    for raw in (typo(issued.plaintext), foreign_key(issued.api_key.key_id)):
        with pytest.raises(ApiError) as info:
            aauth(rf.get("/", headers=bearer(raw)))
        assert (info.value.status, info.value.code) == (401, "invalid_api_key")
    services.tenant_suspend(tenant=issued.api_key.tenant)
    with pytest.raises(ApiError) as info:
        aauth(rf.get("/", headers=bearer(issued.plaintext)))
    assert (info.value.status, info.value.code) == (403, "tenant_suspended")


@override_settings(FAIRWAY_AUTH_FAILURE_LIMIT=1)
def test_aauthenticate_request_slowdown(committed, rf, issued, clock):
    aauth = async_to_sync(authentication.aauthenticate_request)
    with pytest.raises(ApiError):
        aauth(rf.get("/", headers=bearer(foreign_key())))
    with pytest.raises(ApiError) as info:
        aauth(rf.get("/", headers=bearer(issued.plaintext)))
    assert (info.value.status, info.value.code, info.value.retry_after) == (429, "rate_limit_exceeded", 50)


def test_a_burst_with_an_uncached_key_makes_one_database_lookup(committed, rf, issued, clock, monkeypatch):
    # A cold start: 50 requests with the same key arrive before its record is cached. They share one
    # lookup instead of each taking a database connection (what exhausted PostgreSQL under load).
    import asyncio

    from django.core.cache import cache

    from tenants import selectors

    lookups = []
    real_lookup = selectors.aapikey_auth_record

    async def counted(**kwargs):
        lookups.append(kwargs["key_id"])
        await asyncio.sleep(0.05)  # the burst arrives while the first lookup is in flight
        return await real_lookup(**kwargs)

    monkeypatch.setattr(selectors, "aapikey_auth_record", counted)
    cache.clear()

    async def burst():
        requests = [rf.get("/", headers=bearer(issued.plaintext)) for _ in range(50)]
        return await asyncio.gather(*(authentication.aauthenticate_request(r) for r in requests))

    principals = async_to_sync(burst)()
    assert {p.key_id for p in principals} == {issued.api_key.key_id}
    assert lookups == [issued.api_key.key_id]
    async_to_sync(authentication.aauthenticate_request)(rf.get("/", headers=bearer(issued.plaintext)))
    assert len(lookups) == 1  # cached now


def test_cached_auth_records_round_trip_and_tolerate_newer_fields(issued):
    from tenants import selectors
    from tenants.principal import AuthRecord

    record = selectors.apikey_auth_record(key_id=issued.api_key.key_id)
    cached = record.to_cache()
    assert AuthRecord.from_cache(cached) == record
    cached["plan"]["a_field_from_a_newer_gateway"] = 1  # rolling deploys share the cache
    assert AuthRecord.from_cache(cached) == record

"""Limits and metering through the real gateway (uvicorn in a thread) and a FAKE upstream.

Uses the configured quota backend: database on the embedded default, Redis when REDIS_URL is set.
"""

import json
import re
from decimal import Decimal

import httpx
import pytest

from tests.support.billing_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)
HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
           "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+s)$")


def records(**filters):
    from billing.models import UsageRecord

    return list(UsageRecord.objects.filter(**filters).order_by("created_at"))


def record(request_id, status=None):
    from billing.models import UsageRecord

    def ready():
        found = UsageRecord.objects.filter(pk=request_id).first()
        return found if found and found.status != "pending" and (status is None or found.status == status) else None

    return wait_for(ready)


def assert_ratelimit_headers(response):
    for name in HEADERS:
        assert name in response.headers, (name, dict(response.headers))
    assert DURATION.match(response.headers["x-ratelimit-reset-requests"])
    assert DURATION.match(response.headers["x-ratelimit-reset-tokens"])


def test_success_is_metered_and_carries_headers(gateway, fake_llm, make_key, clock):
    issued = make_key(rpm=5, tpm=1000)
    response = post(gateway, issued.plaintext)
    assert response.status_code == 200, response.text
    assert_ratelimit_headers(response)
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    prompt = prompt_tokens()
    assert response.headers["x-ratelimit-remaining-tokens"] == str(1000 - prompt - 4)
    usage = record(response.headers["x-request-id"], "ok")  # committed before the body was sent
    assert (usage.prompt_tokens, usage.completion_tokens, usage.model) == (prompt, 4, MODEL)
    assert usage.reserved_tokens == prompt + 4 and usage.endpoint == "chat.completions"
    assert usage.cost == Decimal(prompt) * Decimal("0.50") / 1000 + Decimal(4) * Decimal("1.50") / 1000
    assert usage.api_key_id == issued.api_key.pk and usage.ttft_s is not None and usage.duration_s > 0
    assert usage.created_at == clock.now


def test_stream_is_metered_before_done_and_carries_headers(gateway, fake_llm, make_key):
    issued = make_key()
    body = {"model": MODEL, "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", gateway + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {issued.plaintext}"}) as response:
        assert_ratelimit_headers(response)
        lines = [line for line in response.iter_lines() if line]
        from billing.models import UsageRecord

        # the final record is durable before the client reads [DONE]
        assert UsageRecord.objects.get(pk=response.headers["x-request-id"]).status == "ok"
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["usage"]["completion_tokens"] == 4


def test_errors_carry_headers_too(gateway, fake_llm, make_key):
    issued = make_key()
    response = post(gateway, issued.plaintext, {"model": MODEL, "messages": [], "max_tokens": 4})
    assert response.status_code == 400
    assert_ratelimit_headers(response)


def test_requests_per_minute_per_tenant_and_key(gateway, fake_llm, make_key, clock):
    issued = make_key(rpm=3)
    statuses = [post(gateway, issued.plaintext).status_code for _ in range(3)]
    refused = post(gateway, issued.plaintext)
    assert statuses == [200, 200, 200] and refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "requests per minute" in error["message"] and "Limit 3" in error["message"]
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert_ratelimit_headers(refused)
    assert record(refused.headers["x-request-id"], "rejected").reason == "rpm"
    clock.advance(seconds=61)  # the next window (django-ratelimit reads the injected clock)
    assert post(gateway, issued.plaintext).status_code == 200
    # per key: a plan with rpm_per_key limits each key separately, the tenant overall
    from tenants import services

    plan_key = make_key(rpm=10)
    services.plan_update(plan=plan_key.api_key.tenant.plan, rpm_per_key=1)
    other = make_key(tenant=plan_key.api_key.tenant)
    assert post(gateway, plan_key.plaintext).status_code == 200
    assert post(gateway, plan_key.plaintext).status_code == 429
    assert post(gateway, other.plaintext).status_code == 200


def test_tokens_per_minute_and_tenant_override(gateway, fake_llm, make_key, clock):
    prompt = prompt_tokens()
    issued = make_key(tpm=2 * (prompt + 4))
    assert [post(gateway, issued.plaintext).status_code for _ in range(2)] == [200, 200]
    refused = post(gateway, issued.plaintext)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "tokens per minute" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert record(refused.headers["x-request-id"], "rejected").reason == "tpm"
    from gateway.quotas.services import tenant_limits_override

    tenant_limits_override(tenant=issued.api_key.tenant, tpm=10 * (prompt + 4))
    response = post(gateway, issued.plaintext)
    assert response.status_code == 200 and response.headers["x-ratelimit-limit-tokens"] == str(10 * (prompt + 4))


def test_monthly_budget_is_insufficient_quota_until_next_month(gateway, fake_llm, make_key, clock):
    prompt = prompt_tokens()
    issued = make_key(monthly_token_budget=prompt + 4)
    assert post(gateway, issued.plaintext).status_code == 200
    refused = post(gateway, issued.plaintext)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "monthly token budget" in error["message"] and "2030-02-01" in error["message"]
    assert int(refused.headers["Retry-After"]) == 16 * 86400 + 11 * 3600 + 59 * 60 + 55
    clock.set(clock.now.replace(month=2, day=1, hour=0, minute=0, second=1))
    assert post(gateway, issued.plaintext).status_code == 200


def test_concurrency_limit_and_cancelled_stream_billed_as_delivered(gateway, fake_llm, make_key):
    fake_llm.script.tokens = ["tok"] * 200
    fake_llm.script.token_delay = 0.02
    issued = make_key(max_concurrent_requests=1, max_tokens_per_request=256)
    body = {"model": MODEL, "messages": HI, "max_tokens": 200, "stream": True}
    with httpx.stream("POST", gateway + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {issued.plaintext}"}) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(8)]  # role chunk + 7 tokens (blank separators skipped below)
        busy = post(gateway, issued.plaintext)
        assert busy.status_code == 429 and "concurrent" in busy.json()["error"]["message"]
        assert busy.json()["error"]["code"] == "rate_limit_exceeded"
        request_id = response.headers["x-request-id"]
    assert fake_llm.disconnected.wait(5)
    usage = record(request_id, "cancelled")
    delivered = sum(1 for line in received if line.startswith("data: ") and '"tok"' in line)
    assert delivered <= usage.completion_tokens < 200  # the client may have had a few more in its buffers
    assert usage.prompt_tokens == prompt_tokens()
    # the slot is free again once the cancellation settled
    assert wait_for(lambda: post(gateway, issued.plaintext, {"model": MODEL, "messages": HI, "max_tokens": 1})
                    .status_code == 200)


def test_upstream_error_charges_only_what_was_delivered(gateway, fake_llm, make_key):
    issued = make_key()
    fake_llm.script.fail_after = 2
    streamed = post(gateway, issued.plaintext, {"model": MODEL, "messages": HI, "max_tokens": 4, "stream": True})
    assert '"engine_error"' in streamed.text
    usage = record(streamed.headers["x-request-id"], "error")
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens(), 2)
    whole = post(gateway, issued.plaintext)
    assert whole.status_code == 502
    usage = record(whole.headers["x-request-id"], "error")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cost) == (0, 0, 0)  # nothing reached the client
    fake_llm.script.fail_after = None
    fake_llm.script.reject = (503, {"error": {"message": "busy", "type": "server_error", "code": "overloaded"}})
    refused = post(gateway, issued.plaintext)
    assert refused.status_code == 503 and record(refused.headers["x-request-id"], "error").cost == 0


def test_quota_store_unreachable_fails_closed(gateway, fake_llm, make_key, settings, caplog):
    from tests.support.servers import free_port

    issued = make_key()
    settings.FAIRWAY_QUOTA_BACKEND = "redis"
    settings.FAIRWAY_QUOTA_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = post(gateway, issued.plaintext)
    assert response.status_code == 503 and response.json()["error"]["code"] == "quota_unavailable"
    assert response.headers["Retry-After"] and fake_llm.requests == []
    assert "refusing to spend" in caplog.text


def test_long_request_renews_its_lease_and_checkpoints_delivered_tokens(gateway, fake_llm, make_key, settings):
    from billing.models import UsageRecord

    settings.FAIRWAY_QUOTA_RENEW_SECONDS = 0.05
    fake_llm.script.tokens = ["tok"] * 40
    fake_llm.script.token_delay = 0.02
    issued = make_key()
    body = {"model": MODEL, "messages": HI, "max_tokens": 40, "stream": True}
    with httpx.stream("POST", gateway + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {issued.plaintext}"}) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        opened = UsageRecord.objects.get(pk=request_id)
        checkpointed = wait_for(lambda: UsageRecord.objects.filter(pk=request_id, status="pending",
                                                                   completion_tokens__gt=0).first())
        assert checkpointed and checkpointed.lease_expires_at > opened.lease_expires_at
        assert checkpointed.prompt_tokens == prompt_tokens()  # what a crash right now would bill
        list(lines)
    final = record(request_id, "ok")
    assert final.completion_tokens == 40 and final.lease_expires_at is None

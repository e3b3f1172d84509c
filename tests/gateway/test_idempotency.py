"""Idempotency-Key: a retry replays the first result (or waits for it) and is never billed twice."""

import json
import threading
from datetime import timedelta

import pytest

from tests.support.billing_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"model": MODEL, "messages": HI, "max_tokens": 4}


def billed(tenant):
    from billing.models import UsageRecord

    return list(UsageRecord.objects.filter(tenant=tenant).exclude(status="rejected").values_list(
        "status", "prompt_tokens", "completion_tokens"))


def test_retry_replays_the_first_result_and_is_not_billed_again(gateway, fake_llm, make_key, clock):
    issued = make_key()
    first = post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "order-1"})
    # same JSON, different key order and spacing: the same request
    again = post(gateway, issued.plaintext, json.loads(json.dumps(BODY, sort_keys=True)),
                 headers={"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["x-fairway-original-request-id"] == first.headers["x-request-id"]
    assert "x-ratelimit-remaining-requests" in again.headers
    assert len(fake_llm.requests) == 1
    assert billed(issued.api_key.tenant) == [("ok", prompt_tokens(), 4)]
    # a different body under the same key is refused; another tenant's same key is its own
    other = post(gateway, issued.plaintext, {**BODY, "max_tokens": 3}, headers={"Idempotency-Key": "order-1"})
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"
    stranger = make_key()
    assert post(gateway, stranger.plaintext, BODY, headers={"Idempotency-Key": "order-1"}).headers.get(
        "Idempotent-Replayed") is None
    # after 24 h the key is forgotten: the request runs (and is billed) again
    clock.advance(hours=24, seconds=1)
    late = post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "order-1"})
    assert late.status_code == 200 and "Idempotent-Replayed" not in late.headers
    assert len(billed(issued.api_key.tenant)) == 2


def test_streamed_result_is_replayed_as_a_stream(gateway, fake_llm, make_key):
    issued = make_key()
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    first = post(gateway, issued.plaintext, body, headers={"Idempotency-Key": "s-1"})
    again = post(gateway, issued.plaintext, body, headers={"Idempotency-Key": "s-1"})

    def parse(text):
        chunks = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
        content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        return content, chunks[-1]["usage"], {c["id"] for c in chunks}

    assert again.headers["content-type"].startswith("text/event-stream") and again.text.endswith("data: [DONE]\n\n")
    assert parse(again.text) == parse(first.text) and len(fake_llm.requests) == 1


def test_concurrent_retry_waits_for_the_first(gateway, fake_llm, make_key):
    fake_llm.script.token_delay = 0.05
    issued = make_key()
    results = {}

    def call(name):
        results[name] = post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "slow"})

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert wait_for(lambda: len(fake_llm.requests) == 1)  # the first attempt is running upstream
    call("retry")
    first.join()
    assert results["retry"].json() == results["first"].json()
    assert results["retry"].headers["Idempotent-Replayed"] == "true"
    assert len(fake_llm.requests) == 1 and len(billed(issued.api_key.tenant)) == 1


def test_a_failed_or_refused_first_attempt_lets_the_retry_run(gateway, fake_llm, make_key):
    issued = make_key(monthly_token_budget=prompt_tokens() + 4)
    fake_llm.script.reject = (503, {"error": {"message": "busy", "type": "server_error", "code": "overloaded"}})
    assert post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "k"}).status_code == 503
    fake_llm.script.reject = None
    retry = wait_for(lambda: (r := post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "k"}))
                     .status_code == 200 and r)
    assert retry and "Idempotent-Replayed" not in retry.headers
    assert sorted(status for status, *_ in billed(issued.api_key.tenant)) == ["error", "ok"]
    # refused by the budget: nothing stored, the key stays usable
    refused = post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "k2"})
    assert refused.status_code == 429


def test_invalid_key_is_refused(gateway, fake_llm, make_key):
    issued = make_key()
    response = post(gateway, issued.plaintext, BODY, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


def test_an_abandoned_claim_is_taken_over(make_key, db_thread_released):
    from billing.idempotency import Busy, Claimed, idempotency_claim
    from gateway.quotas import periods

    tenant_id = str(make_key().api_key.tenant_id)
    now = periods.now()
    args = dict(tenant_id=tenant_id, key="k", fingerprint="f", lock_s=60)
    assert isinstance(idempotency_claim(request_id="a", now=now, **args), Claimed)
    assert isinstance(idempotency_claim(request_id="b", now=now + timedelta(seconds=30), **args), Busy)
    assert isinstance(idempotency_claim(request_id="b", now=now + timedelta(seconds=61), **args), Claimed)

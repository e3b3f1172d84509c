"""Redis and PostgreSQL restarted under traffic: no overspend, nothing acknowledged lost, clear 503s."""

import httpx
import pytest

from tests.support.cluster import wait_until

from .conftest import MODEL, new_key

pytestmark = pytest.mark.faults
MAX_TOKENS = 50


def complete(cluster, key, index: int) -> httpx.Response:
    gateway = cluster.gateways[index % len(cluster.gateways)][0]
    return httpx.post(gateway + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": MAX_TOKENS, "temperature": 0})


def billed(cluster, request_ids) -> list[tuple]:
    return cluster.sql("SELECT request_id, status, prompt_tokens + completion_tokens FROM billing_usagerecord "
                       "WHERE request_id = ANY(%s)", list(request_ids))


def test_redis_restart_never_overspends_the_budget(cluster):
    budget = 1000  # about 13 requests of ~22 prompt + 50 completion tokens
    key = new_key(cluster, monthly_token_budget=budget)
    accepted, statuses = [], []
    for index in range(40):
        if index == 5:
            cluster.redis.stop()  # Redis gone: spending must fail closed (503), never open
            down = complete(cluster, key, index)
            assert down.status_code == 503 and down.json()["error"]["code"]
            cluster.redis.start()  # empty Redis: counters are rebuilt from PostgreSQL
            continue
        response = complete(cluster, key, index)
        statuses.append(response.status_code)
        assert response.status_code in (200, 429, 503), response.text
        if response.status_code == 200:
            accepted.append(response.headers["x-request-id"])
        elif response.status_code == 429:
            assert response.json()["error"]["code"] == "insufficient_quota"
    assert 429 in statuses, "the budget should run out within 40 requests"
    rows = billed(cluster, accepted)
    assert len(rows) == len(accepted) and all(status == "ok" for _, status, _ in rows)
    assert sum(tokens for *_, tokens in rows) <= budget


def test_postgres_restart_gives_clear_503s_and_loses_nothing(cluster):
    key = new_key(cluster)
    # Start from a healthy deployment: the previous test restarted Redis, and until each gateway's
    # Redis connections recover it fails closed (503), as designed.
    wait_until(lambda: complete(cluster, key, 0).status_code == 200, 30, "a healthy deployment")
    accepted = []
    for index in range(3):
        response = complete(cluster, key, index)
        assert response.status_code == 200
        accepted.append(response.headers["x-request-id"])
    cluster.postgres.stop()
    try:
        for index in range(4):
            response = complete(cluster, key, index)
            assert response.status_code in (200, 503), response.text  # never a 500
            if response.status_code == 503:
                assert response.json()["error"]["type"] == "server_error" and response.headers.get("Retry-After")
            else:
                accepted.append(response.headers["x-request-id"])
    finally:
        cluster.postgres.start()
    wait_until(lambda: complete(cluster, key, 0).status_code == 200, 30, "service after PostgreSQL restart")
    wait_until(lambda: len(billed(cluster, accepted)) == len(accepted), 30, "every acknowledged request billed")
    assert all(status == "ok" for _, status, _ in billed(cluster, accepted))

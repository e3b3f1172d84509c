"""kill -9 of an inference replica mid-stream (2 replicas, 2 gateways, real PostgreSQL + Redis)."""

import time

import httpx
import pytest

from tests.support.cluster import wait_until

from .conftest import MODEL, new_key, start_streams

pytestmark = pytest.mark.faults


def usage_rows(cluster, request_ids):
    return cluster.sql("SELECT request_id, status, completion_tokens FROM billing_usagerecord "
                       "WHERE request_id = ANY(%s)", list(request_ids))


def test_kill_replica_mid_stream(cluster):
    key = new_key(cluster)
    results, threads = start_streams(cluster, key, 6, max_tokens=3000)
    wait_until(lambda: all(r.first_token_at for r in results), 60, "every stream's first token")
    killed_at = time.monotonic()
    cluster.kill_replica(0)
    for thread in threads:
        thread.join(timeout=120)

    broken = [r for r in results if r.error]
    finished = [r for r in results if r.done]
    assert broken and finished, f"expected streams on both replicas: {[(r.done, r.error) for r in results]}"
    assert len(broken) + len(finished) == len(results)
    for result in broken:
        assert result.error_at - killed_at < 2.0, "clients must hear of the failure within 2 s"
        assert result.error["code"] == "upstream_error"
    for result in finished:
        assert len(result.text) == 3000

    # New requests go to the surviving replica (a first attempt on the dead one is retried there).
    for index in range(6):
        gateway = cluster.gateways[index % 2][0]
        response = httpx.post(gateway + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                              json={"model": MODEL, "messages": [{"role": "user", "content": "again"}],
                                    "max_tokens": 5, "temperature": 0})
        assert response.status_code == 200, response.text

    # Billing equals what each client received (one ASCII character per token), nothing left pending.
    delivered = {r.request_id: len(r.text) for r in results}

    def settled():
        rows = usage_rows(cluster, delivered)
        return len(rows) == len(delivered) and all(status != "pending" for _, status, _ in rows)

    wait_until(settled, 15, "usage records finalised")
    for request_id, status, completion_tokens in usage_rows(cluster, delivered):
        assert completion_tokens == delivered[request_id], (request_id, status)
        assert status == ("ok" if delivered[request_id] == 3000 else "error")
    open_leases = cluster.sql("SELECT count(*) FROM billing_usagerecord WHERE status = 'pending'")[0][0]
    assert open_leases == 0

"""Fair share across replicas with real processes: two replicas of the tiny model sharing their
fair-share counters through the cluster's Redis registry (inference/fairshare.py).

Tenant x floods both replicas, tenant y (equal weight) floods only replica a. On their own
counters each replica would split 1:1 and x would get three shares to y's one; with the shared
counters replica a serves y while b serves x, and the totals stay within 10 %. Requests go to
the replicas directly, so which replica each one reaches is fixed by the test, not by routing.
"""

import asyncio
import time
import uuid

import httpx
import pytest

from inference import protocol

from .conftest import MODEL

pytestmark = pytest.mark.faults

WARM_UP_S, WINDOW_S, CLIENTS_PER_FLOOD = 4.0, 15.0, 24  # 24 clients per flood > 8 batch slots: queues stay full


def live_replicas(cluster, count: int) -> list[str]:
    alive = [url for url, process in cluster.replicas if process.poll() is None]
    while len(alive) < count:
        alive.append(cluster.start_replica())
    return alive[:count]


def service_given(cluster, replica: str, tenants: list[str]) -> dict[str, float]:
    health = httpx.get(replica + "/health", headers={"Authorization": f"Bearer {cluster.token}"}, timeout=10).json()
    per_tenant = health["engine"]["tenants"]
    return {t: per_tenant.get(t, {}).get("service", 0.0) for t in tenants}


async def flood(replica: str, token: str, tenant: str, stop: asyncio.Event, failures: list) -> None:
    headers = {"Authorization": f"Bearer {token}", protocol.TENANT_HEADER: tenant, protocol.WEIGHT_HEADER: "1"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": 48,
            "temperature": 0, "ignore_eos": True, "stream": True}
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            async with client.stream("POST", replica + "/v1/chat/completions", json=body, headers=headers) as reply:
                if reply.status_code != 200:
                    failures.append(reply.status_code)
                    await asyncio.sleep(0.2)
                async for _ in reply.aiter_bytes():
                    pass


def test_tenant_flooding_both_replicas_gets_no_more_than_its_share(cluster):
    a, b = live_replicas(cluster, 2)
    x, y = f"x-{uuid.uuid4().hex[:8]}", f"y-{uuid.uuid4().hex[:8]}"
    failures: list[int] = []

    async def run() -> tuple[dict, dict]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(flood(replica, cluster.token, tenant, stop, failures))
                 for replica, tenant in [(a, x), (b, x), (a, y)] for _ in range(CLIENTS_PER_FLOOD)]
        await asyncio.sleep(WARM_UP_S)
        before = await asyncio.to_thread(lambda: {r: service_given(cluster, r, [x, y]) for r in (a, b)})
        started = time.monotonic()
        await asyncio.sleep(WINDOW_S)
        after = await asyncio.to_thread(lambda: {r: service_given(cluster, r, [x, y]) for r in (a, b)})
        print(f"window {time.monotonic() - started:.1f}s")
        stop.set()
        await asyncio.gather(*tasks)
        return before, after

    before, after = asyncio.run(run())
    gained = {r: {t: after[r][t] - before[r][t] for t in (x, y)} for r in (a, b)}
    total = {t: gained[a][t] + gained[b][t] for t in (x, y)}
    print(f"service in the window: replica a {gained[a]}, replica b {gained[b]}, total {total}")
    assert not failures, f"replicas refused requests: {failures[:5]}"
    assert total[y] > 0 and total[x] / total[y] == pytest.approx(1.0, abs=0.10), total
    assert gained[a][y] > gained[a][x], "replica a should favour y, which b does not serve"

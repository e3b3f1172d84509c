"""Flood inference replicas directly as given tenants and measure the fair-share service each got.

Shared by the fault test (tests/faults/test_fair_share.py) and its bench (bench/bench_fairness_replicas.py).
Requests go to the replicas, not through a gateway, so which replica each tenant reaches is fixed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from inference import protocol


@dataclass
class FloodResult:
    gained: dict[str, dict[str, float]]  # replica -> tenant -> weighted service in the window
    refused: list[int] = field(default_factory=list)  # HTTP statuses of refused requests

    def total(self, tenant: str) -> float:
        return sum(per_tenant.get(tenant, 0.0) for per_tenant in self.gained.values())


def service_given(replica: str, token: str, tenants: list[str]) -> dict[str, float]:
    health = httpx.get(replica + "/health", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    per_tenant = health["engine"]["tenants"]
    return {t: per_tenant.get(t, {}).get("service", 0.0) for t in tenants}


async def _client(replica: str, token: str, tenant: str, model: str, stop: asyncio.Event, refused: list) -> None:
    headers = {"Authorization": f"Bearer {token}", protocol.TENANT_HEADER: tenant, protocol.WEIGHT_HEADER: "1"}
    body = {"model": model, "messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": 48,
            "temperature": 0, "ignore_eos": True, "stream": True}
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            async with client.stream("POST", replica + "/v1/chat/completions", json=body, headers=headers) as reply:
                if reply.status_code != 200:
                    refused.append(reply.status_code)
                    await asyncio.sleep(0.2)
                async for _ in reply.aiter_bytes():
                    pass


def flood(*, floods: list[tuple[str, str]], token: str, model: str, clients: int, warm_up_s: float,
          window_s: float) -> FloodResult:
    """Run `clients` closed-loop clients for each (replica, tenant) in `floods`; measure each tenant's
    service on each replica over `window_s` seconds after `warm_up_s`."""
    replicas = sorted({replica for replica, _ in floods})
    tenants = sorted({tenant for _, tenant in floods})
    refused: list[int] = []

    def snapshot():
        return {r: service_given(r, token, tenants) for r in replicas}

    async def run():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_client(replica, token, tenant, model, stop, refused))
                 for replica, tenant in floods for _ in range(clients)]
        await asyncio.sleep(warm_up_s)
        before = await asyncio.to_thread(snapshot)
        await asyncio.sleep(window_s)
        after = await asyncio.to_thread(snapshot)
        stop.set()
        await asyncio.gather(*tasks)
        return before, after

    before, after = asyncio.run(run())
    gained = {r: {t: after[r][t] - before[r][t] for t in tenants} for r in replicas}
    return FloodResult(gained=gained, refused=refused)

"""Which inference replica serves a request: discovery, health, least-outstanding-work choice.

Replicas come from a static list (FAIRWAY_INFERENCE_URLS, default the one FAIRWAY_INFERENCE_URL)
and, when FAIRWAY_REPLICA_REGISTRY_URL is set, from the Redis registry the replicas heartbeat into
(inference/registry.py). Each gateway process refreshes its view at most every `refresh_s`: static
replicas by GET /health, registered ones from their heartbeat. A replica that fails a request is
taken out at once for `down_s` and comes back when its health answers again. The choice is the
healthy replica serving the model with the least work: its reported outstanding tokens plus what
this process has sent it since (so a burst spreads before the next refresh).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx


@dataclass
class Replica:
    url: str
    models: frozenset[str] = frozenset()
    reported_load: int = 0
    healthy: bool = False
    draining: bool = False
    down_until: float = 0.0
    inflight: int = 0  # work this process has outstanding there (tokens)
    context_length: int = 0
    started_at: int = 0

    def available(self, now: float) -> bool:
        return self.healthy and not self.draining and now >= self.down_until

    @property
    def score(self) -> int:
        return self.reported_load + self.inflight


class ReplicaDirectory:
    def __init__(self, *, static_urls: list[str], registry_url: str = "", token: str, refresh_s: float = 1.0,
                 down_s: float = 5.0, clock=time.monotonic):
        self.static_urls = [url.rstrip("/") for url in static_urls]
        self.registry_url = registry_url
        self.token = token
        self.refresh_s, self.down_s, self.clock = refresh_s, down_s, clock
        self.replicas: dict[str, Replica] = {url: Replica(url) for url in self.static_urls}
        self._refreshed_at = float("-inf")
        self._refreshing: asyncio.Task | None = None
        self._redis = None

    async def choose(self, client: httpx.AsyncClient, model: str, *, exclude: set[str] = frozenset()) -> Replica | None:
        await self.refresh(client)
        now = self.clock()
        candidates = [r for r in self.replicas.values()
                      if r.url not in exclude and model in r.models and r.available(now)]
        return min(candidates, key=lambda r: (r.score, r.url)) if candidates else None

    async def models(self, client: httpx.AsyncClient) -> dict[str, Replica]:
        """Models of healthy replicas (including ones briefly out after a failure: those answer 503, not 404)."""
        await self.refresh(client)
        served: dict[str, Replica] = {}
        for replica in self.replicas.values():
            if replica.healthy:
                for model in replica.models:
                    served.setdefault(model, replica)
        return served

    def mark_failed(self, url: str) -> None:
        replica = self.replicas.get(url)
        if replica is not None:
            replica.down_until = self.clock() + self.down_s

    async def refresh(self, client: httpx.AsyncClient, *, wait: bool = False) -> None:
        """Refresh when stale. Concurrent callers share one refresh; the hot path waits for it only
        when no healthy replica is known yet (otherwise it routes on the view from the last refresh)."""
        if not wait and self.clock() - self._refreshed_at < self.refresh_s:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh(client))
        if wait or not any(r.healthy for r in self.replicas.values()):
            await asyncio.shield(self._refreshing)

    async def _refresh(self, client: httpx.AsyncClient) -> None:
        try:
            await asyncio.gather(*(self._probe(client, url) for url in self.static_urls))
            if self.registry_url:
                await self._read_registry()
        finally:
            self._refreshed_at = self.clock()

    async def _probe(self, client: httpx.AsyncClient, url: str) -> None:
        replica = self.replicas.setdefault(url, Replica(url))
        try:
            response = await client.get(f"{url}/health", headers={"Authorization": f"Bearer {self.token}"},
                                        timeout=1.0)
            health = response.json() if response.status_code == 200 else None
        except (httpx.TransportError, ValueError):
            health = None
        self._apply(replica, health)

    def _apply(self, replica: Replica, health: dict | None) -> None:
        if health is None:
            replica.healthy = False
            return
        load = health.get("load", {})
        replica.healthy = health.get("status") in ("ok", "draining")
        replica.draining = health.get("status") == "draining" or bool(load.get("draining"))
        replica.models = frozenset([health["model"]]) if health.get("model") else frozenset(health.get("models", ()))
        replica.reported_load = int(load.get("outstanding_tokens", 0))
        replica.context_length = int(health.get("context_length", 0))
        replica.started_at = int(health.get("started_at", 0))
        if replica.healthy and self.clock() >= replica.down_until:
            replica.down_until = 0.0

    async def _read_registry(self) -> None:
        from inference.registry import REPLICA_KEY, REPLICAS_SET
        import redis.asyncio as aioredis

        if self._redis is None:
            self._redis = aioredis.Redis.from_url(self.registry_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            ids = sorted(member.decode() for member in await self._redis.smembers(REPLICAS_SET))
            values = await self._redis.mget([REPLICA_KEY.format(id=i) for i in ids]) if ids else []
        except Exception:  # noqa: BLE001 — registry down: keep routing to what we know
            return
        seen = set()
        for value in values:
            if value is None:
                continue  # expired: the replica stopped heartbeating
            beat = json.loads(value)
            url = beat["url"].rstrip("/")
            seen.add(url)
            self._apply(self.replicas.setdefault(url, Replica(url)), {**beat, "status": beat.get("status", "ok")})
        for url, replica in self.replicas.items():
            if url not in seen and url not in self.static_urls:
                replica.healthy = False

"""The live view of the inference service: poll its /health, shape a snapshot, fan it out.

One `LivePoller` per process (per event loop) runs while at least one live socket is open. Across
processes, a short cache lease elects a single poller, which publishes each snapshot to the channel
layer group every socket has joined (Redis layer in production: one /health call per interval for the
whole fleet, however many operators watch; in-memory layer in the embedded default). The snapshot is
a whitelist of numbers and names: nothing else from the service's answer reaches a browser.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from datetime import datetime, timezone

import httpx
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from tenants.models import Tenant

logger = logging.getLogger("fairway.dashboard")

LIVE_SOCKET_PATH = "/dashboard/ws/live"
GROUP = "dashboard.live"
LEASE_KEY = "dashboard:live:poller-lease"
HEALTH_TIMEOUT_S = 2.0
TENANT_NAMES_TTL_S = 60.0

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()
_pollers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LivePoller]" = weakref.WeakKeyDictionary()
_tenant_names: dict[str, tuple[float, str, str]] = {}  # id -> (fetched at, slug, name)


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    if loop not in _clients:  # an AsyncClient must not cross event loops
        _clients[loop] = httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S)
    return _clients[loop]


async def replica_urls() -> list[str]:
    """The replicas the gateway routes to: the static list and those registered in Redis."""
    from gateway.upstream import known_replica_urls

    return await known_replica_urls()


async def health_fetch(url: str) -> dict:
    """One replica's /health JSON; raises httpx.HTTPError or ValueError when it cannot be had."""
    response = await _client().get(f"{url}/health",
                                   headers={"Authorization": f"Bearer {settings.FAIRWAY_INFERENCE_TOKEN}"})
    if response.status_code != 200:
        raise ValueError(f"HTTP {response.status_code}")
    health = response.json()
    if not isinstance(health, dict):
        raise ValueError("not a JSON object")
    return health


async def _names(tenant_ids: list[str]) -> dict[str, tuple[str, str]]:
    now = time.monotonic()
    missing = [t for t in tenant_ids if t not in _tenant_names or now - _tenant_names[t][0] > TENANT_NAMES_TTL_S]
    valid = [t for t in missing if _is_uuid(t)]
    if valid:
        async for pk, slug, name in Tenant.objects.filter(pk__in=valid).values_list("pk", "slug", "name"):
            _tenant_names[str(pk)] = (now, slug, name)
    return {t: _tenant_names[t][1:] if t in _tenant_names else (t[:8], "") for t in tenant_ids}


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def _number(value, default=0):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.TransportError):
        return "unreachable"
    return str(exc)[:80] if isinstance(exc, ValueError) else "bad answer"


async def _replica(url: str) -> dict:
    """One replica, whitelisted: numbers and short names only."""
    name = url.split("://", 1)[-1]
    try:
        health = await health_fetch(url)
    except (httpx.HTTPError, ValueError) as exc:
        return {"name": name, "up": False, "error": _reason(exc)}
    engine = health.get("engine") if isinstance(health.get("engine"), dict) else {}
    kv = engine.get("kv_cache") if isinstance(engine.get("kv_cache"), dict) else {}
    tenants = engine.get("tenants") if isinstance(engine.get("tenants"), dict) else {}
    used, total = _number(kv.get("used_tokens")), _number(kv.get("total_tokens"))
    return {"name": name, "up": True, "status": str(health.get("status", "ok"))[:20],
            "alive": engine.get("alive", True) is not False, "model": str(health.get("model", ""))[:200],
            "device": str(health.get("device", ""))[:50], "policy": str(engine.get("policy", ""))[:50],
            "running": _number(engine.get("running")), "queued": _number(engine.get("queued")),
            "preemptions": _number(engine.get("preemptions")), "tokens_per_s": _number(engine.get("tokens_per_s")),
            "generated_tokens": _number(engine.get("generated_tokens")), "steps": _number(engine.get("steps")),
            "max_num_seqs": _number(engine.get("max_num_seqs")),
            "kv": {"used_tokens": used, "total_tokens": total, "bytes": _number(kv.get("bytes")),
                   "percent": round(100.0 * used / total, 1) if total else 0.0},
            "tenants": {str(tid)[:64]: {k: _number(t.get(k), 1 if k == "weight" else 0)
                                        for k in ("queued", "running", "virtual_counter", "weight")}
                        for tid, t in tenants.items() if isinstance(t, dict)}}


async def live_snapshot() -> dict:
    """The whole service now: totals over the replicas that answer, per-tenant fair-share state, and
    each replica's own line. `up` is false (with a short reason) when none answers."""
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    replicas = await asyncio.gather(*(_replica(url) for url in await replica_urls()))
    live = [r for r in replicas if r["up"]]
    if not live:
        reason = replicas[0]["error"] if len(replicas) == 1 else f"all {len(replicas)} replicas down"
        return {"up": False, "at": at, "error": reason, "replicas": [_line(r) for r in replicas]}
    merged: dict[str, dict] = {}
    for replica in live:
        for tid, t in replica["tenants"].items():
            row = merged.setdefault(tid, {"queued": 0, "running": 0, "virtual_counter": 0.0, "weight": t["weight"]})
            row["queued"] += t["queued"]
            row["running"] += t["running"]
            row["virtual_counter"] = max(row["virtual_counter"], t["virtual_counter"])  # one scheduler per replica
    names = await _names(list(merged))
    rows = [{"id": tid, "slug": names[tid][0], "name": names[tid][1], **row} for tid, row in merged.items()]
    rows.sort(key=lambda row: (-row["running"] - row["queued"], row["slug"]))
    used = sum(r["kv"]["used_tokens"] for r in live)
    total = sum(r["kv"]["total_tokens"] for r in live)
    first = live[0]
    return {"up": True, "at": at, "alive": all(r["alive"] for r in live), "model": first["model"],
            "device": first["device"], "policy": first["policy"],
            **{key: sum(r[key] for r in live) for key in ("running", "queued", "preemptions", "generated_tokens",
                                                           "steps", "max_num_seqs")},
            "tokens_per_s": round(sum(r["tokens_per_s"] for r in live), 2),
            "kv": {"used_tokens": used, "total_tokens": total, "bytes": sum(r["kv"]["bytes"] for r in live),
                   "percent": round(100.0 * used / total, 1) if total else 0.0},
            "tenants": rows, "replicas": [_line(r) for r in replicas]}


def _line(replica: dict) -> dict:
    if not replica["up"]:
        return {"name": replica["name"], "up": False, "error": replica["error"]}
    return {"name": replica["name"], "up": True, "status": replica["status"], "running": replica["running"],
            "queued": replica["queued"], "tokens_per_s": replica["tokens_per_s"],
            "kv_percent": replica["kv"]["percent"]}


class LivePoller:
    """Polls while anyone on this process watches; publishes only while it holds the fleet lease."""

    def __init__(self) -> None:
        self.watchers = 0
        self.token = uuid.uuid4().hex
        self._task: asyncio.Task | None = None

    def watch(self) -> None:
        self.watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def unwatch(self) -> None:
        self.watchers = max(0, self.watchers - 1)
        if self.watchers == 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            if await cache.aget(LEASE_KEY) == self.token:  # let another process take over at once
                await cache.adelete(LEASE_KEY)

    async def _hold_lease(self, seconds: int) -> bool:
        if await cache.aadd(LEASE_KEY, self.token, timeout=seconds):
            return True
        if await cache.aget(LEASE_KEY) == self.token:
            await cache.atouch(LEASE_KEY, seconds)
            return True
        return False

    async def _run(self) -> None:
        layer = get_channel_layer()
        while True:
            interval = settings.FAIRWAY_DASHBOARD_LIVE_INTERVAL
            started = time.monotonic()
            try:
                if await self._hold_lease(max(3, int(interval * 3) + 1)):
                    await layer.group_send(GROUP, {"type": "live.snapshot", "snapshot": await live_snapshot()})
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 — a cache or layer hiccup must not end the live view
                logger.exception("live poller tick failed")
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - started)))


def poller() -> LivePoller:
    loop = asyncio.get_running_loop()
    if loop not in _pollers:
        _pollers[loop] = LivePoller()
    return _pollers[loop]

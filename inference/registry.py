"""Replica heartbeat: an inference service announces itself in Redis so gateways can find it.

Every `interval` seconds it writes `fw:replica:<id>` (JSON: url, model, load, context) with a TTL of
`ttl` seconds and adds the id to the set `fw:replicas`. A replica that dies simply stops renewing
and drops out when the key expires (no clocks compared across machines); a graceful shutdown
deletes the key at once. A replica on another machine joins by pointing at the same Redis.

After each beat it reads its peers' heartbeats (same model) and hands their per-tenant service to
`on_peers` (fair share across replicas, inference/fairshare.py); ids whose key expired leave the set.
"""

from __future__ import annotations

import json
import logging
import threading
import time

logger = logging.getLogger("fairway.inference")

REPLICAS_SET = "fw:replicas"
REPLICA_KEY = "fw:replica:{id}"


class ReplicaHeartbeat:
    def __init__(self, *, redis_url: str, replica_id: str, url: str, describe, interval: float = 1.0,
                 ttl: float = 5.0, on_peers=None):
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.replica_id, self.url, self.describe = replica_id, url, describe
        self.on_peers = on_peers  # called with {replica id: {tenant: service}} of same-model peers
        self.interval, self.ttl = interval, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fairway-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        description = self.describe()
        payload = json.dumps({"id": self.replica_id, "url": self.url, "at": time.time(), **description})
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(REPLICA_KEY.format(id=self.replica_id), payload, px=int(self.ttl * 1000))
            pipe.sadd(REPLICAS_SET, self.replica_id)
            pipe.execute()
        if self.on_peers is not None:
            try:
                self.on_peers(self.peers(model=description.get("model")))
            except Exception as exc:  # noqa: BLE001 — a bad peer entry must not stop this replica
                logger.warning("reading peer replicas failed: %s", type(exc).__name__)

    def peers(self, *, model: str | None) -> dict[str, dict[str, float]]:
        """The per-tenant service other live replicas of `model` report; prunes expired ids."""
        ids = sorted(member.decode() for member in self.client.smembers(REPLICAS_SET))
        ids = [replica_id for replica_id in ids if replica_id != self.replica_id]
        values = self.client.mget([REPLICA_KEY.format(id=i) for i in ids]) if ids else []
        expired = [replica_id for replica_id, value in zip(ids, values) if value is None]
        if expired:
            self.client.srem(REPLICAS_SET, *expired)
        found = {}
        for replica_id, value in zip(ids, values):
            if value is None:
                continue
            beat = json.loads(value)
            if beat.get("model") == model:
                found[replica_id] = beat.get("service") or {}
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 — a Redis blip must not kill the replica
                logger.warning("replica heartbeat failed: %s", type(exc).__name__)

    def stop(self) -> None:
        """Deregister at once (graceful shutdown)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        try:
            self.client.delete(REPLICA_KEY.format(id=self.replica_id))
            self.client.srem(REPLICAS_SET, self.replica_id)
        except Exception as exc:  # noqa: BLE001
            logger.warning("replica deregistration failed: %s", type(exc).__name__)

"""Redis quota backend: each atomic step is one Lua script (gateway/quotas/lua/*.lua, KEYS/ARGV in
their headers), so every gateway process sharing the Redis sees one set of counters.

Keys carry the Redis server's `run_id` (checked on every new connection): after a restart (with or
without a stale RDB snapshot) the namespace is new, the month counter is missing, and the reserve
script asks for a rebuild from PostgreSQL (the usage records), which is the source of truth.
Redis unreachable → QuotaUnavailable (503): the gateway fails closed rather than spend unmetered.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis.asyncio as aioredis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import RedisError
from redis.retry import Retry

from config import dbthread

from .. import periods
from ..types import Admitted, Hold, Limits, QuotaUnavailable, RateLimited, TokenWindow, store_unreachable
from .base import QuotaBackend, refusal

logger = logging.getLogger("fairway.quotas")

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
SCRIPTS = ("reserve", "settle", "renew", "rebuild")
MINUTE_TTL_S = 120
STATE_TTL_S = 3 * 86400  # holds of an idle tenant vanish eventually
MONTH_GRACE_S = 7 * 86400  # month counters outlive their month (late settles of long requests)
POOL_SIZE = 64  # connections per process (event loop) to the quota Redis
POOL_WAIT_S = 5.0


@dataclass
class _Conn:
    client: aioredis.Redis | None
    scripts: dict
    epoch: str  # the server's run_id: a restart starts a fresh key namespace


def _epoch_check(conn: _Conn):
    """On every new connection: learn the server's run_id. If it changed, Redis restarted (possibly
    from an old snapshot): switch this process to the new key namespace and fail the command that
    opened the connection, so it is retried there instead of running on stale counters."""
    async def on_connect(connection) -> None:
        await connection.on_connect_check_health(check_health=True)
        await connection.send_command("INFO", "server")
        info = await connection.read_response()
        text = info.decode() if isinstance(info, bytes) else str(info)
        run_id = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("run_id:"))[:12]
        if conn.epoch and run_id != conn.epoch:
            conn.epoch = run_id
            logger.warning("quota redis restarted (run_id changed); counters will be rebuilt from PostgreSQL")
            raise RedisConnectionError("quota redis restarted")
        conn.epoch = run_id

    return on_connect


def _keys(epoch: str, tenant_id: str, month: int, minute: int) -> list[str]:
    base = f"fw:q:{epoch}:{{{tenant_id}}}"  # hash tag: one tenant's keys share a cluster slot
    return [f"{base}:m:{month}", f"{base}:w:{minute}", f"{base}:active", f"{base}:holds"]


def _hold_value(tokens: int, spent: int, month: int, minute: int) -> str:
    return f"{tokens}|{spent}|{month}|{minute}"


class RedisQuotaBackend(QuotaBackend):
    def __init__(self, url: str | None = None):
        self.url = url or settings.FAIRWAY_QUOTA_REDIS_URL
        self._sources = {name: (LUA_DIR / f"{name}.lua").read_text() for name in SCRIPTS}
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Conn] = weakref.WeakKeyDictionary()

    # --- connection per event loop ---------------------------------------------------------------

    async def _conn(self) -> _Conn:
        loop = asyncio.get_running_loop()
        conn = self._conns.get(loop)
        if conn is None:
            conn = _Conn(client=None, scripts={}, epoch="")
            # Bounded pool: a burst waits for a connection instead of opening hundreds. No client-side
            # retries: a retried script could count twice; _run decides what may be retried.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, socket_connect_timeout=2.0,
                socket_timeout=3.0, retry=Retry(NoBackoff(), 0), health_check_interval=30,
                redis_connect_func=_epoch_check(conn))
            conn.client = aioredis.Redis(connection_pool=pool)
            conn.scripts = {name: conn.client.register_script(src) for name, src in self._sources.items()}
            await conn.client.ping()  # connects, which sets the epoch
            conn = self._conns.setdefault(loop, conn)
        return conn

    @staticmethod
    async def _run_id(client: aioredis.Redis) -> str:
        return (await client.info("server"))["run_id"][:12]

    async def _run(self, name: str, keys_for, args: list):
        """Run one script, retrying once after a connection error: every script is idempotent per
        request (a lost reply cannot make a retry count twice). If Redis restarted meanwhile (new
        run_id) the retry goes to the new key namespace, whose counters are rebuilt from PostgreSQL."""
        try:
            conn = await self._conn()
            try:
                return await conn.scripts[name](keys=keys_for(conn.epoch), args=args)
            except (RedisConnectionError, RedisTimeoutError):
                conn.epoch = await self._run_id(conn.client)  # usually the connect hook already switched
                return await conn.scripts[name](keys=keys_for(conn.epoch), args=args)
        except RedisError as exc:
            raise store_unreachable(exc) from exc

    # --- the interface -----------------------------------------------------------------------------

    async def reserve(self, *, hold: Hold, limits: Limits, now: datetime, lease_s: float) -> Admitted | RateLimited:
        args = [periods.ms(now), hold.request_id, hold.tokens, limits.monthly_token_budget, limits.tpm,
                limits.max_concurrent_requests, int(lease_s * 1000), hold.month, hold.minute, MINUTE_TTL_S,
                STATE_TTL_S]
        keys_for = lambda epoch: _keys(epoch, hold.tenant_id, hold.month, hold.minute)  # noqa: E731
        result = await self._run("reserve", keys_for, args)
        if result[0] == -1:
            await self._rebuild(tenant_id=hold.tenant_id, now=now)
            result = await self._run("reserve", keys_for, args)
            if result[0] == -1:
                raise QuotaUnavailable("quota counters could not be rebuilt")
        return _decode(result, hold=hold, limits=limits, now=now)

    async def settle(self, *, hold: Hold, spent: int, now: datetime) -> None:
        await self._run("settle", lambda epoch: _keys(epoch, hold.tenant_id, hold.month, hold.minute),
                        [hold.request_id, spent])

    async def renew(self, *, holds: Sequence[tuple[Hold, int]], now: datetime, lease_s: float) -> None:
        by_tenant: dict[str, list] = defaultdict(list)
        for hold, spent in holds:
            by_tenant[hold.tenant_id] += [hold.request_id, spent]
        deadline = periods.ms(now) + int(lease_s * 1000)
        for tenant_id, pairs in by_tenant.items():
            await self._run("renew", lambda epoch, t=tenant_id: _keys(epoch, t, 0, 0)[2:], [deadline, *pairs])

    async def window(self, *, tenant_id: str, limits: Limits, now: datetime) -> TokenWindow:
        minute = periods.minute_id(now)
        try:
            conn = await self._conn()
            used = await conn.client.get(_keys(conn.epoch, tenant_id, 0, minute)[1])
        except RedisError as exc:
            raise store_unreachable(exc) from exc
        return TokenWindow(limit=limits.tpm, used=int(used or 0), reset_s=periods.seconds_to_minute_end(now))

    # --- rebuild from PostgreSQL -------------------------------------------------------------------

    async def _rebuild(self, *, tenant_id: str, now: datetime) -> None:
        from billing import selectors

        snapshot = await dbthread.run(selectors.quota_snapshot, tenant_id=tenant_id, now=now)
        month, minute = periods.month_id(now), periods.minute_id(now)
        args = [snapshot.month_used, snapshot.minute_used,
                int(periods.seconds_to_month_end(now)) + MONTH_GRACE_S, MINUTE_TTL_S, STATE_TTL_S]
        for hold in snapshot.holds:
            deadline = periods.ms(hold.lease_expires_at) if hold.live else 0
            args += [hold.request_id, deadline, _hold_value(hold.tokens, hold.spent, hold.month, hold.minute)]
        rebuilt = await self._run("rebuild", lambda epoch: _keys(epoch, tenant_id, month, minute), args)
        if rebuilt:
            logger.info("quota counters rebuilt from PostgreSQL: tenant=%s month_used=%d holds=%d", tenant_id,
                        snapshot.month_used, len(snapshot.holds))


def _decode(result: list, *, hold: Hold, limits: Limits, now: datetime) -> Admitted | RateLimited:
    window_reset = periods.seconds_to_minute_end(now)
    if result[0] == 1:
        _, month_used, minute_used, _active = result
        return Admitted(hold=hold, window=TokenWindow(limit=limits.tpm, used=int(minute_used), reset_s=window_reset),
                        budget_remaining=max(0, limits.monthly_token_budget - int(month_used)))
    _, reason, month_used, minute_used, active = result
    reason = reason.decode() if isinstance(reason, bytes) else reason
    return refusal(reason=reason, hold=hold, limits=limits, now=now, month_used=int(month_used),
                   minute_used=int(minute_used))


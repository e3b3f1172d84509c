"""Lease renewal: while requests run, each process renews its holds (quota backend) and checkpoints
their usage records every FAIRWAY_QUOTA_RENEW_SECONDS. A crashed process stops renewing, so its
holds lapse after FAIRWAY_QUOTA_LEASE_SECONDS and `manage.py usage_reconcile` closes its records,
billing what the last checkpoint saw delivered."""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta

from django.conf import settings

from billing.metering import IdempotencyLock, UsageCheckpoint
from billing.writer import usage_writer

from . import periods
from .backends import get_backend

logger = logging.getLogger("fairway.quotas")


class LeaseKeeper:
    def __init__(self) -> None:
        # Weak: an admission whose request object was dropped without ever finishing (a stream the
        # client abandoned before it started) stops being renewed, so its hold lapses on its own.
        self.live: weakref.WeakSet = weakref.WeakSet()
        self._task: asyncio.Task | None = None

    def add(self, admission) -> None:
        self.live.add(admission)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def discard(self, admission) -> None:
        self.live.discard(admission)

    async def _loop(self) -> None:
        while self.live:
            await asyncio.sleep(settings.FAIRWAY_QUOTA_RENEW_SECONDS)
            await self.renew()

    async def renew(self) -> None:
        live = list(self.live)
        if not live:
            return
        now = periods.now()
        lease = settings.FAIRWAY_QUOTA_LEASE_SECONDS
        until = now + timedelta(seconds=lease)
        try:
            await get_backend().renew(holds=[(a.hold, sum(a.spent_so_far())) for a in live], now=now, lease_s=lease)
        except Exception as exc:  # noqa: BLE001 — keep renewing the records; the holds lapse at worst
            logger.error("could not renew %d quota holds: %s", len(live), type(exc).__name__)
        ops = []
        for admission in live:
            prompt, completion = admission.spent_so_far()
            ops.append(UsageCheckpoint(request_id=admission.hold.request_id, prompt_tokens=prompt,
                                       completion_tokens=completion, lease_expires_at=until))
            if admission.claim is not None:
                ops.append(IdempotencyLock(tenant_id=admission.hold.tenant_id, key=admission.claim.key,
                                           request_id=admission.hold.request_id, until=until))
        usage_writer().write_soon(*ops)


_keepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LeaseKeeper]" = weakref.WeakKeyDictionary()


def lease_keeper() -> LeaseKeeper:
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(loop)
    if keeper is None:
        keeper = _keepers[loop] = LeaseKeeper()
    return keeper

"""The quota backend interface: one atomic check-and-reserve, settle, lease renewal, a read for headers.

Implementations: `redis.RedisQuotaBackend` (production; each atomic step is one Lua script) and
`database.DatabaseQuotaBackend` (the embedded default; one conditional UPDATE). Chosen by
settings.FAIRWAY_QUOTA_BACKEND; see `get_backend()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from ..types import Admitted, Hold, Limits, RateLimited, TokenWindow


class QuotaBackend(ABC):
    @abstractmethod
    async def reserve(self, *, hold: Hold, limits: Limits, now: datetime, lease_s: float) -> Admitted | RateLimited:
        """Atomically: refuse if the tenant is at its concurrency limit, or `hold.tokens` would pass the
        minute's TPM or the month's budget; otherwise count the tokens and take a slot under a lease."""

    @abstractmethod
    async def settle(self, *, hold: Hold, spent: int, now: datetime) -> None:
        """The request ended: count `spent` tokens in place of the reservation and free the slot."""

    @abstractmethod
    async def renew(self, *, holds: Sequence[tuple[Hold, int]], now: datetime, lease_s: float) -> None:
        """Extend live holds' leases, checkpointing the tokens each has spent so far."""

    @abstractmethod
    async def window(self, *, tenant_id: str, limits: Limits, now: datetime) -> TokenWindow:
        """The current TPM window without reserving (headers on responses that reserved nothing)."""

    def settle_sync(self, *, hold: Hold, spent: int, now: datetime) -> None:
        """Settle from synchronous code (management commands)."""
        from asgiref.sync import async_to_sync

        async_to_sync(self.settle)(hold=hold, spent=spent, now=now)

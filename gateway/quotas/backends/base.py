"""The quota backend interface: one atomic check-and-reserve, settle, lease renewal, a read for headers.

Implementations: `redis.RedisQuotaBackend` (production; each atomic step is one Lua script) and
`database.DatabaseQuotaBackend` (the embedded default; one conditional UPDATE). Chosen by
settings.FAIRWAY_QUOTA_BACKEND; see `get_backend()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from .. import periods
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


def refusal(*, reason: str, hold: Hold, limits: Limits, now: datetime, month_used: int,
            minute_used: int) -> RateLimited:
    """The RateLimited value both backends return, with the wait that makes sense for the reason."""
    window = TokenWindow(limit=limits.tpm, used=minute_used, reset_s=periods.seconds_to_minute_end(now))
    if reason == "budget":
        return RateLimited(retry_after=periods.seconds_to_month_end(now), reason=reason, window=window,
                           limit=limits.monthly_token_budget, requested=hold.tokens)
    if reason == "tpm":
        return RateLimited(retry_after=window.reset_s, reason=reason, window=window, limit=limits.tpm,
                           requested=hold.tokens)
    return RateLimited(retry_after=1.0, reason=reason, window=window, limit=limits.max_concurrent_requests)

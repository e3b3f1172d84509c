"""Database quota backend (the embedded default; also correct on PostgreSQL).

Check-and-reserve is one conditional UPDATE on the tenant's QuotaState row: the WHERE clause holds
every limit and the SET clause resets a counter whose month/minute has passed, so concurrent
requests (threads or processes) can never both take the last tokens. The database serialises
writers of the row (row lock on PostgreSQL, the write lock on SQLite). Counters only ever move by
deltas computed in SQL (F expressions), never by writing back a value read earlier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import BigIntegerField, Case, F, Value, When
from django.db.models.lookups import LessThan, LessThanOrEqual

from config import dbthread

from .. import periods
from ..models import QuotaHold, QuotaState
from ..types import Admitted, Hold, Limits, RateLimited, TokenWindow
from .base import QuotaBackend, refusal


def _current(counter: str, period: str, value: int):
    """The counter if it belongs to period `value`, else 0 (the period rolled over)."""
    return Case(When(**{period: value}, then=F(counter)), default=Value(0), output_field=BigIntegerField())


def _at(period: str, value: int, amount: int):
    """`amount` if the row's counter is still in period `value`, else 0 (never touch a newer period)."""
    return Case(When(**{period: value}, then=Value(amount)), default=Value(0), output_field=BigIntegerField())


class DatabaseQuotaBackend(QuotaBackend):
    async def reserve(self, *, hold: Hold, limits: Limits, now: datetime, lease_s: float) -> Admitted | RateLimited:
        return await dbthread.run(self.reserve_sync, hold=hold, limits=limits, now=now, lease_s=lease_s)

    async def settle(self, *, hold: Hold, spent: int, now: datetime) -> None:
        await dbthread.run(self.settle_sync, hold=hold, spent=spent, now=now)

    async def renew(self, *, holds: Sequence[tuple[Hold, int]], now: datetime, lease_s: float) -> None:
        await dbthread.run(self.renew_sync, holds=holds, now=now, lease_s=lease_s)

    async def window(self, *, tenant_id: str, limits: Limits, now: datetime) -> TokenWindow:
        return await dbthread.run(self.window_sync, tenant_id=tenant_id, limits=limits, now=now)

    # --- synchronous implementations (run on the database thread, or directly by commands) ----------

    def reserve_sync(self, *, hold: Hold, limits: Limits, now: datetime, lease_s: float) -> Admitted | RateLimited:
        with transaction.atomic():
            admitted = self._take(hold, limits)
            if not admitted and self._lapse_expired(hold.tenant_id, now):
                admitted = self._take(hold, limits)
            if not admitted and not QuotaState.objects.filter(pk=hold.tenant_id).exists():
                QuotaState.objects.bulk_create([QuotaState(tenant_id=hold.tenant_id)], ignore_conflicts=True)
                admitted = self._take(hold, limits)
            if admitted:
                QuotaHold.objects.create(request_id=hold.request_id, tenant_id=hold.tenant_id, tokens=hold.tokens,
                                         month=hold.month, minute=hold.minute,
                                         lease_expires_at=now + timedelta(seconds=lease_s))
            state = QuotaState.objects.get(pk=hold.tenant_id)
        month_used = state.month_used if state.month == hold.month else 0
        minute_used = state.minute_used if state.minute == hold.minute else 0
        if admitted:
            window = TokenWindow(limit=limits.tpm, used=minute_used, reset_s=periods.seconds_to_minute_end(now))
            return Admitted(hold=hold, window=window,
                            budget_remaining=max(0, limits.monthly_token_budget - month_used))
        if month_used + hold.tokens > limits.monthly_token_budget:
            reason = "budget"
        elif minute_used + hold.tokens > limits.tpm:
            reason = "tpm"
        else:
            reason = "concurrency"
        return refusal(reason=reason, hold=hold, limits=limits, now=now, month_used=month_used,
                       minute_used=minute_used)

    @staticmethod
    def _take(hold: Hold, limits: Limits) -> bool:
        """The one conditional UPDATE: reserve if, and only if, every limit still holds."""
        month_now = _current("month_used", "month", hold.month)
        minute_now = _current("minute_used", "minute", hold.minute)
        return QuotaState.objects.filter(
            LessThanOrEqual(month_now + hold.tokens, limits.monthly_token_budget),
            LessThanOrEqual(minute_now + hold.tokens, limits.tpm),
            LessThan(F("active"), limits.max_concurrent_requests),
            pk=hold.tenant_id,
        ).update(month_used=month_now + hold.tokens, minute_used=minute_now + hold.tokens, month=hold.month,
                 minute=hold.minute, active=F("active") + 1) == 1

    @staticmethod
    def _lapse_expired(tenant_id: str, now: datetime) -> int:
        """Holds whose lease passed (crashed gateway): keep what they spent, release the rest and the slot."""
        lapsed = 0
        for hold in QuotaHold.objects.filter(tenant_id=tenant_id, live=True, lease_expires_at__lte=now)[:64]:
            if not QuotaHold.objects.filter(pk=hold.pk, live=True, tokens=hold.tokens).update(
                    live=False, tokens=F("spent")):
                continue  # settled or lapsed concurrently
            release = hold.tokens - hold.spent
            QuotaState.objects.filter(pk=tenant_id).update(
                active=F("active") - 1, month_used=F("month_used") - _at("month", hold.month, release),
                minute_used=F("minute_used") - _at("minute", hold.minute, release))
            lapsed += 1
        return lapsed

    def settle_sync(self, *, hold: Hold, spent: int, now: datetime) -> None:
        with transaction.atomic():
            row = QuotaHold.objects.filter(pk=hold.request_id).values("tokens", "live").first()
            if row is None:
                return  # already settled: hold and counters live in one database, so nothing is ever lost
            if not QuotaHold.objects.filter(pk=hold.request_id, **row).delete()[0]:
                # it lapsed between the read and the delete: read its shrunk form once more
                row = QuotaHold.objects.filter(pk=hold.request_id).values("tokens", "live").first()
                if row is None or not QuotaHold.objects.filter(pk=hold.request_id, **row).delete()[0]:
                    return
            delta = spent - row["tokens"]
            QuotaState.objects.filter(pk=hold.tenant_id).update(
                active=F("active") - (1 if row["live"] else 0),
                month_used=F("month_used") + _at("month", hold.month, delta),
                minute_used=F("minute_used") + _at("minute", hold.minute, delta))

    def renew_sync(self, *, holds: Sequence[tuple[Hold, int]], now: datetime, lease_s: float) -> None:
        deadline = now + timedelta(seconds=lease_s)
        with transaction.atomic():
            for hold, spent in holds:
                QuotaHold.objects.filter(pk=hold.request_id, live=True).update(lease_expires_at=deadline, spent=spent)

    def window_sync(self, *, tenant_id: str, limits: Limits, now: datetime) -> TokenWindow:
        minute = periods.minute_id(now)
        state = QuotaState.objects.filter(pk=tenant_id).values("minute", "minute_used").first()
        used = state["minute_used"] if state and state["minute"] == minute else 0
        return TokenWindow(limit=limits.tpm, used=used, reset_s=periods.seconds_to_minute_end(now))

"""The clock and the quota periods (UTC calendar months, epoch minutes). Tests patch `now`."""

from __future__ import annotations

from datetime import date, datetime, timezone

from django.utils import timezone as dj_timezone


def now() -> datetime:
    """The quota clock; tests monkeypatch `gateway.quotas.periods.now` instead of sleeping."""
    return dj_timezone.now()


def month_id(at: datetime) -> int:
    at = at.astimezone(timezone.utc)
    return at.year * 100 + at.month


def minute_id(at: datetime) -> int:
    return int(at.timestamp() // 60)


def month_start(month: int) -> datetime:
    return datetime(month // 100, month % 100, 1, tzinfo=timezone.utc)


def next_month_start(month: int) -> datetime:
    year, mon = divmod(month, 100)
    return datetime(year + (mon == 12), 1 if mon == 12 else mon + 1, 1, tzinfo=timezone.utc)


def month_of(day: date) -> int:
    return day.year * 100 + day.month


def seconds_to_month_end(at: datetime) -> float:
    return (next_month_start(month_id(at)) - at).total_seconds()


def seconds_to_minute_end(at: datetime) -> float:
    return 60.0 - (at.timestamp() % 60)


def minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, tz=timezone.utc)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)

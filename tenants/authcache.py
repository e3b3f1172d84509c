"""Cache keys and atomic counters behind API key authentication (sync and async twins).

Works on any Django cache backend: counters use `add` (set-if-absent) then `incr`, which are
atomic on both locmem and Redis. Time-based keys are bucketed by the *injected* clock, so tests
move time forward instead of sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from tenants.principal import AuthRecord

_RECORD = "fw:auth:key:v2:"  # v2: plans carry allowed_models (a v1 reader could not decode it)


def record_key(key_id: str) -> str:
    return _RECORD + key_id


def record_decode(value: dict | None) -> AuthRecord | None:
    return None if value is None else AuthRecord.from_cache(value)


async def aget_many(names: list[str]) -> dict:
    """One thread hop and one round trip: Django's `cache.aget_many` awaits `aget` once per key."""
    return await sync_to_async(cache.get_many, thread_sensitive=True)(names)


def record_set(record: AuthRecord) -> None:
    cache.set(record_key(record.key_id), record.to_cache(), timeout=settings.FAIRWAY_KEY_CACHE_SECONDS)


async def arecord_set(record: AuthRecord) -> None:
    await cache.aset(record_key(record.key_id), record.to_cache(), timeout=settings.FAIRWAY_KEY_CACHE_SECONDS)


def records_invalidate(key_ids: Iterable[str]) -> None:
    """Drop cached auth records now, and again after commit.

    The second delete closes the race where a request reads the old row (not yet committed)
    and re-caches it between our first delete and the commit.
    """
    names = [record_key(key_id) for key_id in key_ids]
    if not names:
        return
    cache.delete_many(names)
    transaction.on_commit(lambda: cache.delete_many(names))


# --- failed-authentication slowdown, per client address, fixed windows ---------------------------

def failure_bucket(*, client: str, now: datetime) -> tuple[str, int]:
    """The counter key for `client` in the window containing `now`, and seconds until it ends."""
    window = settings.FAIRWAY_AUTH_FAILURE_WINDOW
    ts = now.timestamp()
    bucket = int(ts // window)
    return f"fw:auth:fail:{client}:{bucket}", max(1, math.ceil((bucket + 1) * window - ts))


def failure_record(name: str) -> int:
    cache.add(name, 0, timeout=settings.FAIRWAY_AUTH_FAILURE_WINDOW + 1)
    try:
        return cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.add(name, 1, timeout=settings.FAIRWAY_AUTH_FAILURE_WINDOW + 1)
        return 1


async def afailure_record(name: str) -> int:
    await cache.aadd(name, 0, timeout=settings.FAIRWAY_AUTH_FAILURE_WINDOW + 1)
    try:
        return await cache.aincr(name)
    except ValueError:
        await cache.aadd(name, 1, timeout=settings.FAIRWAY_AUTH_FAILURE_WINDOW + 1)
        return 1


# --- coarse last_used_at: one guard key per key per interval -------------------------------------

def touch_guard(*, api_key_id: UUID | str, now: datetime) -> tuple[str, int]:
    interval = max(1, settings.FAIRWAY_KEY_LAST_USED_INTERVAL)
    return f"fw:auth:used:{api_key_id}:{int(now.timestamp() // interval)}", interval


# Guards this process has already tried. Saves the per-request cache round trip (~0.4 ms on Redis):
# after the first request of an interval, a worker skips straight past the touch. Bounded; a race
# only costs one extra `add`, and the cache `add` still decides across processes.
_tried_guards: dict[str, None] = {}
_TRIED_MAX = 10_000


def touch_tried_locally(name: str) -> bool:
    """True if this process already tried `name`; otherwise remember it and return False."""
    if name in _tried_guards:
        return True
    if len(_tried_guards) >= _TRIED_MAX:
        _tried_guards.clear()
    _tried_guards[name] = None
    return False

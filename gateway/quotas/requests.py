"""Requests per minute, per tenant and (when the plan or tenant sets `rpm_per_key`) per API key,
counted by django-ratelimit on the Django cache: Redis in production, so every gateway process
shares one counter per window; local memory in the embedded default (one process)."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from gateway.errors import ApiError

from .headers import STATE_ATTR, RateLimitState, RequestsWindow, format_reset
from .types import Limits, QuotaUnavailable, store_unreachable

logger = logging.getLogger("fairway.quotas")

PERIOD_S = 60
# Cache round trips must not block the event loop; a few long-lived threads keep their connections.
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fairway-rpm")


def requests_count(*, request, principal) -> tuple[RequestsWindow, str | None, int]:
    """Count this request in each RPM bucket. Returns the binding window, and the refusing scope
    ("tenant" or "key") with its count, or (window, None, 0)."""
    plan = principal.plan
    buckets = [("tenant", "fairway.rpm.tenant", str(principal.tenant_id), plan.rpm)]
    if plan.rpm_per_key:
        buckets.append(("key", "fairway.rpm.key", str(principal.api_key_id), plan.rpm_per_key))
    binding, refused, used = None, None, 0
    for scope, group, value, limit in buckets:
        usage = get_usage(request, group=group, key=lambda _g, _r, v=value: v, rate=(limit, PERIOD_S),
                          increment=True)
        # We always increment, so a count of 0 means the cache could not count: fail closed. (A
        # negative time_left with a real count only means the window ended during a slow round trip.)
        if usage is None or usage["count"] == 0:
            logger.error("request counter unavailable (cache add/incr failed): refusing to spend")
            raise QuotaUnavailable("request counter unavailable")
        window = RequestsWindow(limit=limit, remaining=max(0, limit - usage["count"]),
                                reset_s=max(usage["time_left"], 0.001))
        if binding is None or window.remaining < binding.remaining:
            binding = window
        if usage["should_limit"] and refused is None:
            refused, used = scope, usage["count"]
    return binding, refused, used


async def requests_check(*, request, principal) -> None:
    """Count the request; raise 429 `rate_limit_exceeded` over a limit. Records the window for headers."""
    state = RateLimitState(tenant_id=str(principal.tenant_id), limits=Limits.from_plan(principal.plan))
    setattr(request, STATE_ATTR, state)
    count = functools.partial(requests_count, request=request, principal=principal)
    try:
        if isinstance(caches[settings.RATELIMIT_USE_CACHE], LocMemCache):
            window, refused, used = count()  # in-process: no I/O to move off the event loop
        else:
            window, refused, used = await asyncio.get_running_loop().run_in_executor(_executor, count)
    except RedisError as exc:
        raise store_unreachable(exc) from exc
    state.requests = window
    if refused:
        from .admission import usage_rejected

        usage_rejected(request=request, principal=principal, reason="rpm")
        wait = window.reset_s
        raise ApiError(429, f"Rate limit reached for requests per minute on this {refused}: Limit {window.limit}, "
                            f"Used {used}. Please try again in {format_reset(wait)}.",
                       code="rate_limit_exceeded", retry_after=max(1, math.ceil(wait)))

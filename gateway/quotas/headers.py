"""OpenAI's rate-limit headers, on every completion response (success, error, streaming).

x-ratelimit-{limit,remaining,reset}-requests: the binding RPM bucket (the key's or the tenant's,
whichever has fewer requests left); x-ratelimit-{limit,remaining,reset}-tokens: the TPM window.
Resets are durations in OpenAI's format ("1s", "6m0s", "20ms").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from .types import Limits, TokenWindow

logger = logging.getLogger("fairway.quotas")
STATE_ATTR = "fairway_ratelimit"


def format_reset(seconds: float) -> str:
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(frozen=True, slots=True)
class RequestsWindow:
    limit: int
    remaining: int
    reset_s: float


@dataclass
class RateLimitState:
    """What one request learned about its limits; the view wrapper turns it into headers."""

    tenant_id: str
    limits: Limits
    requests: RequestsWindow | None = None
    tokens: TokenWindow | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.requests is not None:
            headers.update({"x-ratelimit-limit-requests": str(self.requests.limit),
                            "x-ratelimit-remaining-requests": str(self.requests.remaining),
                            "x-ratelimit-reset-requests": format_reset(self.requests.reset_s)})
        if self.tokens is not None:
            headers.update({"x-ratelimit-limit-tokens": str(self.tokens.limit),
                            "x-ratelimit-remaining-tokens": str(self.tokens.remaining),
                            "x-ratelimit-reset-tokens": format_reset(self.tokens.reset_s)})
        return headers


def state_for(request) -> RateLimitState | None:
    return getattr(request, STATE_ATTR, None)


async def ratelimit_headers_apply(*, request, response):
    """Add the headers to `response`. A request that reserved nothing reads the TPM window (one
    round trip, only on that path); if even that fails, the token headers are left out."""
    state = state_for(request)
    if state is None:
        return response
    if state.tokens is None:
        from . import periods
        from .backends import get_backend

        try:
            state.tokens = await get_backend().window(tenant_id=state.tenant_id, limits=state.limits,
                                                      now=periods.now())
        except Exception as exc:  # noqa: BLE001 — headers are best effort; the response itself stands
            logger.warning("could not read the token window for headers: %s", type(exc).__name__)
    for name, value in state.headers().items():
        response[name] = value
    return response

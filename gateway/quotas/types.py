"""Small value objects passed between the gateway and the quota backends."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.errors import ApiError

logger = logging.getLogger("fairway.quotas")

REASON_CONCURRENCY = "concurrency"
REASON_TPM = "tpm"
REASON_BUDGET = "budget"
REASON_RPM = "rpm"


@dataclass(frozen=True, slots=True)
class Limits:
    """The token-side limits of one tenant (effective: plan with the tenant's overrides)."""

    tpm: int
    monthly_token_budget: int
    max_concurrent_requests: int

    @classmethod
    def from_plan(cls, plan) -> Limits:
        return cls(tpm=plan.tpm, monthly_token_budget=plan.monthly_token_budget,
                   max_concurrent_requests=plan.max_concurrent_requests)


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request reserves: `tokens` (prompt + max_tokens) in its month and minute."""

    request_id: str
    tenant_id: str
    tokens: int
    month: int
    minute: int


@dataclass(frozen=True, slots=True)
class TokenWindow:
    """The tokens-per-minute window as the rate-limit headers report it."""

    limit: int
    used: int
    reset_s: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class Admitted:
    hold: Hold
    window: TokenWindow
    budget_remaining: int


@dataclass(frozen=True, slots=True)
class RateLimited:
    retry_after: float
    reason: str  # concurrency | tpm | budget | rpm
    window: TokenWindow | None = None
    limit: int = 0  # the limit that refused, for the message
    requested: int = 0


class QuotaUnavailable(ApiError):
    """The quota store cannot be reached: refuse to spend (fail closed) rather than spend unmetered."""

    def __init__(self, detail: str):
        super().__init__(503, "Usage limits cannot be checked right now, so the request was not run; "
                              f"please retry shortly ({detail}).", code="quota_unavailable", retry_after=5)


def store_unreachable(exc: Exception) -> QuotaUnavailable:
    """Log (type only: no secrets, no content) and turn a store error into the 503 we answer with."""
    logger.error("quota redis unreachable (%s): refusing to spend", type(exc).__name__)
    return QuotaUnavailable("quota store unreachable")

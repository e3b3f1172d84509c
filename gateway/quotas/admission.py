"""One completion's quota and metering obligations, from reservation to settlement.

admission_open: count the prompt exactly → reserve prompt + max_tokens (one atomic backend call)
→ open the usage record (awaited: it is durable before anything is forwarded) → renew its lease
while it runs. Admission.settle: when the request ends, settle the hold to the tokens billed and
finalise the record. On success the final record (and the idempotent result) is committed BEFORE
the client receives its last bytes, so nothing acknowledged is ever missing from billing; after a
cancellation or failure it is written in the background (see billing/writer.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings

from billing.metering import IdempotencyDone, UsageFinal, UsageOpen, usage_billable
from billing.models import UsageRecord
from billing.sealing import result_seal
from billing.writer import usage_writer
from gateway import upstream
from gateway.errors import ApiError
from gateway.validation import ChatRequest

from . import periods
from .backends import get_backend
from .headers import format_reset, state_for
from .leases import lease_keeper
from .types import Hold, QuotaUnavailable, RateLimited

logger = logging.getLogger("fairway.quotas")

BIG_PROMPT_CHARS = 32_768  # tokenize larger prompts in a thread, off the event loop


def endpoint_of(parsed) -> str:
    return "chat.completions" if isinstance(parsed, ChatRequest) else "completions"


_fetching: dict[tuple, asyncio.Task] = {}


async def _prompt_counter(model: str):
    """upstream.prompt_counter, fetched once even when a burst of first requests all need it."""
    key = (asyncio.get_running_loop(), model)
    task = _fetching.get(key)
    if task is None:
        task = _fetching[key] = asyncio.get_running_loop().create_task(upstream.prompt_counter(model))
        task.add_done_callback(lambda _: _fetching.pop(key, None))
    return await asyncio.shield(task)


async def prompt_tokens_count(*, parsed) -> tuple[int, int]:
    """(prompt tokens, context length), counted exactly as the inference service will."""
    counter = await _prompt_counter(parsed.model)
    if isinstance(parsed, ChatRequest):
        size = sum(len(message["content"]) for message in parsed.messages)
        count = lambda: counter.chat_tokens(list(parsed.messages))  # noqa: E731
    else:
        size, count = len(parsed.prompt), lambda: counter.text_tokens(parsed.prompt)
    tokens = await asyncio.to_thread(count) if size > BIG_PROMPT_CHARS else count()
    return tokens, counter.context_length


def reservation_size(*, parsed, prompt_tokens: int, context_length: int) -> int:
    """prompt + max_tokens; without an explicit max_tokens the service clamps it to the context left."""
    max_tokens = parsed.params.max_tokens
    if not parsed.params.max_tokens_explicit:
        max_tokens = min(max_tokens, max(1, context_length - prompt_tokens))
    return prompt_tokens + max_tokens


def _open_op(*, principal, request_id: str, model: str, endpoint: str, stream: bool, reserved: int, now,
             rejected: str = "") -> UsageOpen:
    lease = None if rejected else now + timedelta(seconds=settings.FAIRWAY_QUOTA_LEASE_SECONDS)
    return UsageOpen(request_id=request_id, tenant_id=str(principal.tenant_id), api_key_id=str(principal.api_key_id),
                     model=model, endpoint=endpoint, stream=stream, reserved_tokens=reserved,
                     price_per_1k_input_tokens=principal.plan.price_per_1k_input_tokens,
                     price_per_1k_output_tokens=principal.plan.price_per_1k_output_tokens, created_at=now,
                     lease_expires_at=lease, rejected=rejected)


def usage_rejected(*, request, principal, reason: str, parsed=None, reserved: int = 0) -> None:
    """A request refused by a limit still gets its (unbilled) usage record; written in the background."""
    model, endpoint, stream = "", "", False
    if parsed is not None:
        model, endpoint, stream = parsed.model, endpoint_of(parsed), parsed.stream
    else:
        model = _model_hint(request)
        endpoint = "chat.completions" if request.path.endswith("chat/completions") else "completions"
    usage_writer().write_soon(_open_op(principal=principal, request_id=request.request_id, model=model,
                                       endpoint=endpoint, stream=stream, reserved=reserved, now=periods.now(),
                                       rejected=reason))


def _model_hint(request) -> str:
    try:
        model = json.loads(request.body).get("model")
    except Exception:  # noqa: BLE001 — only a label for the record
        return ""
    return model[:200] if isinstance(model, str) else ""


def _refused(refusal: RateLimited) -> ApiError:
    wait = max(1, math.ceil(refusal.retry_after))
    if refusal.reason == "budget":
        resets = periods.next_month_start(periods.month_id(periods.now())).date().isoformat()
        return ApiError(429, f"You exceeded your monthly token budget: Limit {refusal.limit}, Requested "
                             f"{refusal.requested} (prompt + max_tokens). The budget resets on {resets}; ask "
                             "your operator to raise it, or lower max_tokens.",
                        code="insufficient_quota", type="insufficient_quota", retry_after=wait)
    if refusal.reason == "tpm":
        used = refusal.window.used if refusal.window else 0
        return ApiError(429, f"Rate limit reached for tokens per minute: Limit {refusal.limit}, Used {used}, "
                             f"Requested {refusal.requested} (prompt + max_tokens). Please try again in "
                             f"{format_reset(refusal.retry_after)}.", code="rate_limit_exceeded", retry_after=wait)
    return ApiError(429, f"Too many concurrent requests for this tenant: Limit {refusal.limit}. Please retry "
                         "when one of them has finished.", code="rate_limit_exceeded", retry_after=wait)


async def admission_open(*, request, principal, parsed, claim=None) -> "Admission":
    """Reserve and open the record, or raise (429 over a limit, 503 if quotas/usage cannot be written).
    On failure the caller releases `claim` (gateway/idempotency.py: idempotency_abandon)."""
    prompt_tokens, context_length = await prompt_tokens_count(parsed=parsed)
    now = periods.now()
    hold = Hold(request_id=request.request_id, tenant_id=str(principal.tenant_id),
                tokens=reservation_size(parsed=parsed, prompt_tokens=prompt_tokens, context_length=context_length),
                month=periods.month_id(now), minute=periods.minute_id(now))
    state = state_for(request)
    backend = get_backend()
    result = await backend.reserve(hold=hold, limits=state.limits, now=now,
                                   lease_s=settings.FAIRWAY_QUOTA_LEASE_SECONDS)
    state.tokens = result.window
    if isinstance(result, RateLimited):
        usage_rejected(request=request, principal=principal, reason=result.reason, parsed=parsed,
                       reserved=hold.tokens)
        raise _refused(result)
    opened = _open_op(principal=principal, request_id=hold.request_id, model=parsed.model,
                      endpoint=endpoint_of(parsed), stream=parsed.stream, reserved=hold.tokens, now=now)
    admission = Admission(principal=principal, hold=hold, prompt_tokens=prompt_tokens, claim=claim, opened=opened)
    try:
        await usage_writer().write(opened)
    except BaseException as exc:  # not forwarded: release the hold, close the record (in the background)
        cancelled = isinstance(exc, asyncio.CancelledError)
        admission.finish(SimpleNamespace(status="cancelled" if cancelled else "error", prompt_tokens=0,
                                         completion_tokens=0, ttft_s=None))
        if cancelled:
            raise
        logger.error("usage record could not be opened (%s): refusing to forward", type(exc).__name__)
        raise QuotaUnavailable("usage cannot be recorded") from exc
    lease_keeper().add(admission)
    return admission


class Admission:
    """An admitted request: its hold, and the duty to settle it exactly once."""

    def __init__(self, *, principal, hold: Hold, prompt_tokens: int, claim=None, opened: UsageOpen | None = None):
        self.principal, self.hold, self.prompt_tokens, self.claim = principal, hold, prompt_tokens, claim
        self.opened = opened
        self.outcome = None  # the CompletionRun's Outcome (delivered tokens so far)
        self._usage_done = self._quota_done = False
        self._started = time.monotonic()

    @property
    def wants_result(self) -> bool:
        return self.claim is not None

    def spent_so_far(self) -> tuple[int, int]:
        delivered = self.outcome.completion_tokens if self.outcome is not None else 0
        return usage_billable(status=UsageRecord.Status.PENDING, prompt_tokens=self.prompt_tokens,
                              completion_tokens=delivered)

    def _ops(self, outcome, result: dict | None) -> list:
        prompt, completion = usage_billable(status=outcome.status, prompt_tokens=self.prompt_tokens,
                                            completion_tokens=outcome.completion_tokens)
        if outcome.prompt_tokens and outcome.prompt_tokens != self.prompt_tokens:
            logger.warning("prompt count differs from the inference service's: gateway=%d service=%d (billing "
                           "the gateway's)", self.prompt_tokens, outcome.prompt_tokens)
        plan = self.principal.plan
        ops = [UsageFinal(request_id=self.hold.request_id, status=outcome.status, reason="", prompt_tokens=prompt,
                          completion_tokens=completion, ttft_s=outcome.ttft_s,
                          duration_s=time.monotonic() - self._started,
                          price_per_1k_input_tokens=plan.price_per_1k_input_tokens,
                          price_per_1k_output_tokens=plan.price_per_1k_output_tokens, finalised_at=periods.now(),
                          opened=self.opened)]
        if self.claim is not None:
            sealed = None
            if outcome.status == UsageRecord.Status.OK and result is not None:
                sealed = result_seal(tenant_id=self.hold.tenant_id, key=self.claim.key, result=result)
            ops.append(IdempotencyDone(tenant_id=self.hold.tenant_id, key=self.claim.key,
                                       request_id=self.hold.request_id, sealed=sealed, at=periods.now()))
        return ops

    async def settle(self, outcome, *, result: dict | None = None) -> None:
        """Awaited before the client's final bytes: the final record is committed when this returns.
        Raises QuotaUnavailable if it could not be written (then `finish` retries in the background)."""
        if self._usage_done:
            return
        ops = self._ops(outcome, result)
        spent = ops[0].prompt_tokens + ops[0].completion_tokens
        quota, usage = await asyncio.gather(self._settle_quota(spent), usage_writer().write(*ops),
                                            return_exceptions=True)
        if isinstance(usage, BaseException):
            raise QuotaUnavailable("usage could not be recorded") from usage
        self._usage_done = True
        lease_keeper().discard(self)

    async def _settle_quota(self, spent: int) -> None:
        if self._quota_done:
            return
        try:
            await get_backend().settle(hold=self.hold, spent=spent, now=periods.now())
        except Exception as exc:  # noqa: BLE001 — retried by `finish`; at worst the hold lapses with its lease
            logger.error("quota settle failed: %s", type(exc).__name__)
            return
        self._quota_done = True

    def finish(self, outcome) -> None:
        """Called once when the run ends; writes in the background whatever `settle` did not."""
        lease_keeper().discard(self)
        if self._usage_done and self._quota_done:
            return
        ops = self._ops(outcome, None)
        spent = ops[0].prompt_tokens + ops[0].completion_tokens
        if not self._usage_done:
            self._usage_done = True
            usage_writer().write_soon(*ops)
        if not self._quota_done:
            asyncio.get_running_loop().create_task(self._settle_quota(spent))

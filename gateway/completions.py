"""One completion through the gateway: forward, stream or aggregate, count what was delivered.

The boundary between "HTTP error" and "in-stream error" is the upstream's first chunk: it arrives
as soon as the inference service accepted the request (before generation), so context-length,
queue-full and service-down failures are still plain HTTP errors with the right status, while a
failure after that ends the SSE stream with a final `data: {"error": …}` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from inference import protocol

from . import upstream
from .errors import ApiError
from .sse import DONE, sse_event
from .validation import ChatRequest, CompletionRequest

logger = logging.getLogger("fairway.gateway")


@dataclass
class Outcome:
    """What happened to one request, as the gateway saw it (tokens counted as delivered)."""

    status: str = "pending"  # ok | cancelled | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    ttft_s: float | None = None
    duration_s: float = 0.0
    delivered_text: list[str] = field(default_factory=list, repr=False)  # never logged

    @property
    def text(self) -> str:
        return "".join(self.delivered_text)


class CompletionRun:
    def __init__(self, *, principal, request: ChatRequest | CompletionRequest, request_id: str, admission=None):
        self.principal = principal
        self.request = request
        self.chat = isinstance(request, ChatRequest)
        self.request_id = request_id
        self.completion_id = ("chatcmpl-" if self.chat else "cmpl-") + request_id.removeprefix("req_")
        self.created = int(time.time())
        self.outcome = Outcome()
        self._started = time.monotonic()
        self._upstream = None
        self.admission = admission  # quotas/metering (gateway/quotas/admission.py); None: unmetered
        if admission is not None:
            admission.outcome = self.outcome  # lease renewals checkpoint the tokens delivered so far

    def upstream_payload(self) -> dict:
        params = self.request.params
        payload = {"model": self.request.model, "max_tokens": params.max_tokens, "temperature": params.temperature,
                   "top_p": params.top_p, "seed": params.seed, "stop": list(params.stop),
                   protocol.CLAMP_FIELD: not params.max_tokens_explicit}
        if self.chat:
            payload["messages"] = list(self.request.messages)
        else:
            payload["prompt"] = self.request.prompt
        return payload

    async def open(self) -> None:
        """Start the upstream request and wait until it is accepted (raises ApiError if not)."""
        self._upstream = upstream.stream_generation(
            chat=self.chat, payload=self.upstream_payload(), tenant_id=str(self.principal.tenant_id),
            weight=float(self.principal.plan.weight), request_id=self.request_id)
        try:
            first = await anext(self._upstream)
        except StopAsyncIteration:
            raise upstream.unavailable("empty stream")
        except BaseException as exc:
            await self._close(exc)
            raise
        self.outcome.prompt_tokens = first.prompt_tokens or 0

    async def sse(self):
        """The client's SSE stream (call after open())."""
        pending_tokens = 0
        try:
            yield sse_event(self._chunk(delta={"role": "assistant", "content": ""}, text=""))
            async for event in self._upstream:
                pending_tokens += event.tokens
                if event.text:
                    yield sse_event(self._chunk(delta={"content": event.text}, text=event.text))
                    self.outcome.delivered_text.append(event.text)
                    self._delivered(pending_tokens)
                    pending_tokens = 0
                if event.finish_reason:
                    self.outcome.finish_reason = event.finish_reason
                    yield sse_event(self._chunk(delta={}, text="", finish_reason=event.finish_reason))
                    self._delivered(pending_tokens)
                    pending_tokens = 0
            self.outcome.status = "ok"
            failed = await self._acknowledge()
            if failed is not None:
                self.outcome.status = "error"
                yield sse_event(failed.body())
                return
            if self.request.include_usage:
                yield sse_event(protocol.usage_chunk(self.completion_id, self.created, self.request.model,
                                                     chat=self.chat, usage_=self._usage()))
            yield DONE
        except upstream.UpstreamStreamError as exc:
            self.outcome.status = "error"
            await self._acknowledge()
            yield sse_event(exc.body())
        finally:
            await self._close(None if self.outcome.status in ("ok", "error") else asyncio.CancelledError())

    async def whole(self) -> dict:
        """Aggregate the stream into one OpenAI response (call after open())."""
        texts, tokens = [], 0
        try:
            async for event in self._upstream:
                texts.append(event.text)
                tokens += event.tokens
                self.outcome.finish_reason = event.finish_reason or self.outcome.finish_reason
        except BaseException as exc:
            await self._close(exc)
            if isinstance(exc, upstream.UpstreamStreamError):
                raise ApiError(502, exc.message, code=exc.code, type="server_error") from exc
            raise
        self._delivered(tokens)
        self.outcome.delivered_text = texts
        self.outcome.status = "ok"
        failed = await self._acknowledge()
        if failed is not None:  # nothing reached the client: bill nothing
            self.outcome.status, self.outcome.completion_tokens = "error", 0
            await self._close(None)
            raise failed
        await self._close(None)
        build = protocol.chat_completion if self.chat else protocol.text_completion
        return build(self.completion_id, self.created, self.request.model, text="".join(texts),
                     finish_reason=self.outcome.finish_reason or "stop", usage_=self._usage())

    def _chunk(self, *, delta: dict, text: str, finish_reason: str | None = None) -> dict:
        if self.chat:
            chunk = protocol.chat_chunk(self.completion_id, self.created, self.request.model, delta=delta,
                                        finish_reason=finish_reason)
        else:
            chunk = protocol.completion_chunk(self.completion_id, self.created, self.request.model, text=text,
                                              finish_reason=finish_reason)
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    def _delivered(self, tokens: int) -> None:
        if self.outcome.ttft_s is None and tokens:
            self.outcome.ttft_s = time.monotonic() - self._started
        self.outcome.completion_tokens += tokens

    def _usage(self) -> dict:
        return protocol.usage(self.outcome.prompt_tokens, self.outcome.completion_tokens)

    async def _close(self, exc: BaseException | None) -> None:
        """Close the upstream stream (cancelling generation if unfinished) and record the outcome once."""
        if self._upstream is not None:
            upstream_stream, self._upstream = self._upstream, None
            await upstream_stream.aclose()
        if self.outcome.status == "pending":
            cancelled = isinstance(exc, (asyncio.CancelledError, GeneratorExit))
            self.outcome.status = "cancelled" if cancelled else "error"
        if not self.outcome.duration_s:
            self.outcome.duration_s = time.monotonic() - self._started
            self.finished(self.outcome)

    async def _acknowledge(self) -> ApiError | None:
        """Make billing durable before the client's final bytes (the end of a stream, or the whole body)."""
        if self.admission is None:
            return None
        from .idempotency import result_for_replay

        ok = self.outcome.status == "ok"
        result = result_for_replay(run=self) if ok and self.admission.wants_result else None
        try:
            await self.admission.settle(self.outcome, result=result)
        except ApiError as exc:
            return exc
        return None

    def finished(self, outcome: Outcome) -> None:
        """Called once at the end: metering settles here if `_acknowledge` did not; logs counts, never content."""
        if self.admission is not None:
            self.admission.finish(outcome)
        logger.info("completion request_id=%s tenant=%s status=%s prompt_tokens=%d completion_tokens=%d "
                    "duration=%.3fs", self.request_id, self.principal.tenant_id, outcome.status,
                    outcome.prompt_tokens, outcome.completion_tokens, outcome.duration_s)

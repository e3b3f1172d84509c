"""`Idempotency-Key` on completion POSTs: claim, wait for a running first attempt, or replay its result.

A replay is byte-for-byte the first response for non-streaming requests; for streaming ones it is
the same completion (id, text, finish reason, usage) re-sent as SSE in fewer chunks. Replays are not
billed and reserve no tokens (they still count as requests per minute). See billing/idempotency.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

from config import dbthread
from billing.idempotency import Claimed, Completed, Mismatch, idempotency_claim, idempotency_fingerprint
from billing.sealing import result_open
from inference import protocol

from .errors import ApiError
from .quotas import periods
from .sse import DONE, SSE_HEADERS, sse_event

_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


async def idempotency_begin(*, request, principal, body: dict, endpoint: str) -> Claimed | HttpResponseBase | None:
    """None without the header; a Claimed to pass to admission; or the replayed first response."""
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not _VALID_KEY.fullmatch(key):
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable ASCII characters.",
                       code="invalid_idempotency_key")
    fingerprint = idempotency_fingerprint(endpoint=endpoint, body=body)
    tenant_id = str(principal.tenant_id)
    deadline = time.monotonic() + settings.FAIRWAY_IDEMPOTENCY_WAIT_SECONDS
    delay = 0.02
    while True:
        found = await dbthread.run(idempotency_claim, tenant_id=tenant_id, key=key, fingerprint=fingerprint,
                                   request_id=request.request_id, now=periods.now(),
                                   lock_s=settings.FAIRWAY_QUOTA_LEASE_SECONDS)
        if isinstance(found, Claimed):
            return found
        if isinstance(found, Mismatch):
            raise ApiError(400, "This Idempotency-Key was already used with a different request; use a new key "
                                "for a new request.", code="idempotency_key_reused")
        if isinstance(found, Completed):
            return replay_response(result_open(tenant_id=tenant_id, key=key, sealed=found.sealed),
                                   original_request_id=found.request_id)
        if time.monotonic() >= deadline:
            raise ApiError(409, "A request with this Idempotency-Key is still in progress; retry shortly.",
                           code="idempotency_key_in_use", retry_after=1)
        await asyncio.sleep(delay)  # the first attempt is still running (here or in another process)
        delay = min(delay * 2, 0.5)


def result_for_replay(*, run) -> dict:
    """What to store of a completed CompletionRun to replay it later (sealed before storage)."""
    return {"chat": run.chat, "stream": run.request.stream, "include_usage": run.request.include_usage,
            "id": run.completion_id, "created": run.created, "model": run.request.model, "text": run.outcome.text,
            "finish_reason": run.outcome.finish_reason or "stop", "usage": run._usage()}


def replay_response(result: dict, *, original_request_id: str) -> HttpResponseBase:
    if result["stream"]:
        response = StreamingHttpResponse(_replay_stream(result), content_type="text/event-stream")
        for name, value in SSE_HEADERS.items():
            response[name] = value
    else:
        build = protocol.chat_completion if result["chat"] else protocol.text_completion
        body = build(result["id"], result["created"], result["model"], text=result["text"],
                     finish_reason=result["finish_reason"], usage_=result["usage"])
        response = HttpResponse(json.dumps(body), content_type="application/json")
    response["Idempotent-Replayed"] = "true"
    response["x-fairway-original-request-id"] = original_request_id
    return response


async def _replay_stream(result: dict):
    chat, args = result["chat"], (result["id"], result["created"], result["model"])

    def chunk(text: str, delta: dict, finish_reason=None) -> bytes:
        payload = (protocol.chat_chunk(*args, delta=delta, finish_reason=finish_reason) if chat else
                   protocol.completion_chunk(*args, text=text, finish_reason=finish_reason))
        if result["include_usage"]:
            payload["usage"] = None
        return sse_event(payload)

    if chat:
        yield chunk("", {"role": "assistant", "content": ""})
    if result["text"]:
        yield chunk(result["text"], {"content": result["text"]})
    yield chunk("", {}, result["finish_reason"])
    if result["include_usage"]:
        yield sse_event(protocol.usage_chunk(*args, chat=chat, usage_=result["usage"]))
    yield DONE


def idempotency_abandon(*, request, principal, claim) -> None:
    """Release a claim whose request never ran (refused or failed before forwarding); idempotent."""
    if isinstance(claim, Claimed):
        from billing.metering import IdempotencyDone
        from billing.writer import usage_writer

        usage_writer().write_soon(IdempotencyDone(tenant_id=str(principal.tenant_id), key=claim.key,
                                                  request_id=request.request_id, sealed=None, at=periods.now()))

"""Async client for the inference service: streams generation events, maps failures to ApiErrors.

The gateway always asks the service to stream, even for non-streaming clients, so it can count the
tokens it actually delivers and cancel the work the moment its client goes away (closing the
upstream connection is the cancellation signal).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass

import httpx
from django.conf import settings

from inference import protocol

from .errors import ApiError
from .sse import aiter_sse_data

UNAVAILABLE_RETRY_AFTER = 5
MODELS_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class UpstreamEvent:
    text: str
    tokens: int
    finish_reason: str | None
    prompt_tokens: int | None


class UpstreamStreamError(ApiError):
    """The service failed after the stream started: the gateway ends its own stream with an error event."""


_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()
_models_cache: dict[str, tuple[float, list[dict]]] = {}


def _client() -> httpx.AsyncClient:
    """One pooled client per event loop (an AsyncClient must not cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        timeout = httpx.Timeout(settings.FAIRWAY_UPSTREAM_READ_TIMEOUT, connect=settings.FAIRWAY_UPSTREAM_CONNECT_TIMEOUT)
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        client = httpx.AsyncClient(timeout=timeout, limits=limits)
        _clients[loop] = client
    return client


def _headers(*, tenant_id: str = "", weight: float = 1.0, request_id: str = "") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {settings.FAIRWAY_INFERENCE_TOKEN}"}
    if tenant_id:
        headers[protocol.TENANT_HEADER] = tenant_id
        headers[protocol.WEIGHT_HEADER] = repr(float(weight))
    if request_id:
        headers[protocol.REQUEST_ID_HEADER] = request_id
    return headers


def unavailable(detail: str) -> ApiError:
    return ApiError(503, f"The inference service is unavailable ({detail}); please retry shortly.",
                    code="service_unavailable", retry_after=UNAVAILABLE_RETRY_AFTER)


async def list_models() -> list[dict]:
    """The model cards the inference service serves (cached briefly per process)."""
    base = settings.FAIRWAY_INFERENCE_URL
    cached = _models_cache.get(base)
    if cached and time.monotonic() - cached[0] < MODELS_CACHE_SECONDS:
        return cached[1]
    try:
        response = await _client().get(f"{base}/v1/models", headers=_headers())
    except httpx.TransportError as exc:
        raise unavailable(type(exc).__name__) from exc
    if response.status_code != 200:
        raise unavailable(f"HTTP {response.status_code} from /v1/models")
    models = response.json()["data"]
    _models_cache[base] = (time.monotonic(), models)
    return models


async def stream_generation(*, chat: bool, payload: dict, tenant_id: str, weight: float, request_id: str):
    """Yield UpstreamEvents; raise ApiError before the first event, UpstreamStreamError after it."""
    path = "/v1/chat/completions" if chat else "/v1/completions"
    url = settings.FAIRWAY_INFERENCE_URL + path
    headers = _headers(tenant_id=tenant_id, weight=weight, request_id=request_id)
    started = False
    try:
        async with _client().stream("POST", url, json={**payload, "stream": True}, headers=headers) as response:
            if response.status_code != 200:
                raise _relayed_error(response.status_code, await response.aread(), response.headers)
            async for data in aiter_sse_data(response.aiter_lines()):
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    error = event["error"]
                    raise UpstreamStreamError(502, error.get("message", "The inference service failed."),
                                              code=error.get("code") or "upstream_error", type="server_error")
                started = True
                yield _event(event)
            raise UpstreamStreamError(502, "The inference service ended the stream early.", code="upstream_error")
    except httpx.TransportError as exc:
        if started:
            raise UpstreamStreamError(502, "The inference service connection was lost mid-stream.",
                                      code="upstream_error") from exc
        raise unavailable(type(exc).__name__) from exc


def _event(chunk: dict) -> UpstreamEvent:
    choice = chunk["choices"][0] if chunk.get("choices") else {}
    text = choice.get("delta", {}).get("content") or choice.get("text") or ""
    extra = chunk.get("fairway", {})
    return UpstreamEvent(text=text, tokens=int(extra.get("tokens", 0)), finish_reason=choice.get("finish_reason"),
                         prompt_tokens=extra.get("prompt_tokens"))


def _relayed_error(status: int, body: bytes, headers) -> ApiError:
    """Pass the service's client errors through (400 context length, 404 model, 429 queue full, 503)."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return unavailable(f"HTTP {status}")
    if status == 401 or status >= 500 and status != 503:
        return unavailable(f"HTTP {status}")
    retry_after = headers.get("retry-after")
    return ApiError(status, error.get("message", "Request failed."), code=error.get("code"),
                    param=error.get("param"), type=error.get("type"),
                    retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None)


_counters: dict[tuple[str, str], "PromptCounter"] = {}


async def prompt_counter(model: str):
    """The served model's exact prompt counter, fetched once per process (3 MB of tokenizer JSON)."""
    from .tokens import PromptCounter

    key = (settings.FAIRWAY_INFERENCE_URL, model)
    counter = _counters.get(key)
    if counter is None:
        try:
            response = await _client().get(f"{settings.FAIRWAY_INFERENCE_URL}/v1/tokenizer", headers=_headers())
        except httpx.TransportError as exc:
            raise unavailable(type(exc).__name__) from exc
        if response.status_code != 200:
            raise unavailable(f"HTTP {response.status_code} from /v1/tokenizer")
        counter = PromptCounter.from_payload(response.json())
        _counters[key] = counter
    return counter

"""Async client for the inference service: streams generation events, maps failures to ApiErrors.

The gateway always asks the service to stream, even for non-streaming clients, so it can count the
tokens it actually delivers and cancel the work the moment its client goes away (closing the
upstream connection is the cancellation signal).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from django.conf import settings

from inference import protocol

from .errors import ApiError
from .replicas import Replica, ReplicaDirectory

if TYPE_CHECKING:
    from .tokens import PromptCounter

UNAVAILABLE_RETRY_AFTER = 5


@dataclass(frozen=True)
class UpstreamEvent:
    text: str
    tokens: int
    finish_reason: str | None
    prompt_tokens: int | None


class UpstreamStreamError(ApiError):
    """The service failed after the stream started: the gateway ends its own stream with an error event."""


_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()
_directories: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[tuple, ReplicaDirectory]]" = (
    weakref.WeakKeyDictionary())
_counters: dict[str, "PromptCounter"] = {}


def reset() -> None:
    """Forget replicas and tokenizers (tests point the gateway at new services)."""
    _directories.clear()
    _counters.clear()


def _static_urls() -> list[str]:
    return list(settings.FAIRWAY_INFERENCE_URLS) or [settings.FAIRWAY_INFERENCE_URL]


def _directory() -> ReplicaDirectory:
    """This process's view of the replicas (one per event loop; rebuilt when settings change)."""
    loop = asyncio.get_running_loop()
    key = (tuple(_static_urls()), settings.FAIRWAY_REPLICA_REGISTRY_URL, settings.FAIRWAY_INFERENCE_TOKEN)
    known = _directories.get(loop)
    if known is None or known[0] != key:
        directory = ReplicaDirectory(static_urls=list(key[0]), registry_url=key[1], token=key[2],
                                     refresh_s=settings.FAIRWAY_REPLICA_REFRESH_SECONDS,
                                     down_s=settings.FAIRWAY_REPLICA_DOWN_SECONDS)
        known = (key, directory)
        _directories[loop] = known
    return known[1]


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
    """Model cards of what the healthy replicas serve now."""
    served = await _directory().models(_client())
    if not served and not any(r.healthy for r in _directory().replicas.values()):
        raise unavailable("no healthy inference replica")
    return [protocol.model_card(model, replica.started_at) for model, replica in sorted(served.items())]


async def stream_generation(*, chat: bool, payload: dict, tenant_id: str, weight: float, request_id: str):
    """Yield UpstreamEvents; raise ApiError before the first event, UpstreamStreamError after it.

    A replica that fails before the first event (unreachable, overloaded, draining) is skipped and
    the request is tried once more on another replica; after the first event there is no retry.
    """
    directory, tried = _directory(), set()
    work = int(payload.get("max_tokens") or 0) + _prompt_estimate(payload)
    for attempt in (1, 2):
        replica = await directory.choose(_client(), payload["model"], exclude=tried)
        if replica is None:
            if tried:
                break
            raise unavailable("no healthy inference replica serves this model")
        tried.add(replica.url)
        replica.inflight += work
        started = False
        try:
            async for event in _stream_from(replica, chat, payload, tenant_id, weight, request_id):
                started = True
                yield event
            return
        except ApiError as exc:
            if started or exc.status != 503 or isinstance(exc, UpstreamStreamError):
                raise
            if exc.code == "service_unavailable":  # unreachable: out until its health answers again
                directory.mark_failed(replica.url)
            last_error = exc  # overloaded or draining: try another replica, keep this one in rotation
        finally:
            replica.inflight -= work
    raise last_error


def _prompt_estimate(payload: dict) -> int:
    """Rough prompt size for local load accounting only (≈4 characters per token)."""
    text = payload.get("prompt") or "".join(m.get("content", "") for m in payload.get("messages", ()))
    return len(text) // 4


async def _stream_from(replica: Replica, chat: bool, payload: dict, tenant_id: str, weight: float, request_id: str):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    headers = _headers(tenant_id=tenant_id, weight=weight, request_id=request_id)
    started = False
    try:
        async with _client().stream("POST", replica.url + path, json={**payload, "stream": True},
                                    headers=headers) as response:
            if response.status_code != 200:
                raise _relayed_error(response.status_code, await response.aread(), response.headers)
            done = False
            async for data in protocol.aiter_sse_data(response.aiter_bytes()):
                if data == "[DONE]":  # read on to the end of the body: an unfinished response closes the
                    done = True       # connection instead of returning it to the pool (a TCP connect per request)
                    continue
                try:
                    event = json.loads(data)
                    if not isinstance(event, dict):
                        raise ValueError("not an object")
                except ValueError:
                    if started:
                        raise UpstreamStreamError(502, "The inference service sent a malformed event.",
                                                  code="upstream_error") from None
                    raise unavailable("malformed event") from None
                if "error" in event:
                    error = event["error"]
                    raise UpstreamStreamError(502, error.get("message", "The inference service failed."),
                                              code=error.get("code") or "upstream_error", type="server_error")
                started = True
                yield _event(event)
            if done:
                return
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


async def prompt_counter(model: str):
    """The served model's exact prompt counter, fetched once per process (3 MB of tokenizer JSON)."""
    from .tokens import PromptCounter

    counter = _counters.get(model)
    if counter is None:
        replica = await _directory().choose(_client(), model)
        if replica is None:
            raise unavailable("no healthy inference replica serves this model")
        try:
            response = await _client().get(f"{replica.url}/v1/tokenizer", headers=_headers())
        except httpx.TransportError as exc:
            raise unavailable(type(exc).__name__) from exc
        if response.status_code != 200:
            raise unavailable(f"HTTP {response.status_code} from /v1/tokenizer")
        counter = PromptCounter.from_payload(response.json())
        _counters[model] = counter
    return counter


async def known_replica_urls() -> list[str]:
    """Every replica this process knows of (static list and Redis registry), healthy or not."""
    directory = _directory()
    await directory.refresh(_client())
    registered = sorted(url for url in directory.replicas if url not in directory.static_urls)
    return directory.static_urls + registered  # configured order first

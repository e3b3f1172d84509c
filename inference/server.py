"""The inference service's internal HTTP app: a small raw-ASGI app in front of the engine.

Routes (all require `Authorization: Bearer <FAIRWAY_INFERENCE_TOKEN>`): GET /health, GET /metrics,
GET /v1/models, POST /v1/chat/completions, POST /v1/completions (stream true/false). A client that
disconnects cancels its generation at once; the engine frees its cache at the next step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from . import protocol
from .engine.errors import EngineOverloaded, EngineStopped, InvalidRequest, TenantQueueFull
from .engine.sequence import GenerationRequest
from .requests import BadRequest, ParsedRequest, parse_generation_request

logger = logging.getLogger("fairway.inference")
MAX_BODY_BYTES = 2 * 1024 * 1024


@dataclass
class ServiceState:
    engine: object  # inference.engine.engine.Engine
    prompt_builder: object  # inference.tokenization.PromptBuilder
    model_name: str
    context_length: int
    device: str
    token: str
    started_at: int = field(default_factory=lambda: int(time.time()))
    metrics: object | None = None  # inference.metrics.EngineMetrics
    # Work admitted and not finished (prompt + max_tokens of each open request): the load figure the
    # gateway routes by, published in /health and the replica heartbeat.
    outstanding_tokens: int = 0
    open_requests: int = 0
    draining: bool = False

    def load(self) -> dict:
        return {"outstanding_tokens": self.outstanding_tokens, "open_requests": self.open_requests,
                "draining": self.draining}


class InferenceApp:
    def __init__(self, state: ServiceState):
        self.state = state
        self._tokenizer_cache: dict | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except BadRequest as exc:
            await _send_json(send, exc.status, protocol.error_body(exc.message, type_=exc.type_, code=exc.code,
                                                                   param=exc.param), exc.headers)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.state.engine.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope, receive, send):
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if scope["path"] == "/ready":  # for probes without the token: says nothing but yes or no
            ready = bool(self.state.engine.stats().get("alive", True)) and not self.state.draining
            return await _send_json(send, 200 if ready else 503, {"ready": ready})
        if not self._authorized(headers.get("authorization", "")):
            raise BadRequest(401, "Missing or invalid internal service token.", code="invalid_service_token")
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/health":
            return await _send_json(send, 200, self._health())
        if method == "GET" and path == "/metrics" and self.state.metrics is not None:
            body, content_type = self.state.metrics.render(self.state.engine.stats())
            return await _send(send, 200, body, content_type)
        if method == "GET" and path == "/v1/tokenizer":
            return await _send_json(send, 200, self._tokenizer_payload())
        if method == "GET" and path == "/v1/models":
            card = protocol.model_card(self.state.model_name, self.state.started_at)
            return await _send_json(send, 200, {"object": "list", "data": [card]})
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            body = await _read_body(receive)
            return await self._generate(path == "/v1/chat/completions", body, headers, receive, send)
        raise BadRequest(404, f"No route {method} {path}.", code="not_found")

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.state.token.encode())

    def _tokenizer_payload(self) -> dict:
        """What the gateway needs to count prompt tokens exactly as this service does (see gateway/tokens.py)."""
        if self._tokenizer_cache is None:
            tokenizer = self.state.prompt_builder.tokenizer
            self._tokenizer_cache = {
                "model": self.state.model_name, "context_length": self.state.context_length,
                "chat_template": tokenizer.chat_template, "special_tokens": tokenizer.special_tokens_map,
                "tokenizer_json": tokenizer.backend_tokenizer.to_str()}
        return self._tokenizer_cache

    def _health(self) -> dict:
        stats = self.state.engine.stats()
        status = "draining" if self.state.draining else ("ok" if stats.get("alive", True) else "down")
        return {"status": status, "model": self.state.model_name, "device": self.state.device,
                "context_length": self.state.context_length, "started_at": self.state.started_at,
                "load": self.state.load(), "engine": stats}

    async def _generate(self, chat: bool, body: bytes, headers: dict, receive, send):
        parsed = parse_generation_request(body, chat=chat, headers=headers, served_model=self.state.model_name)
        prompt_ids = (self.state.prompt_builder.chat_prompt_ids(parsed.messages) if chat
                      else self.state.prompt_builder.completion_prompt_ids(parsed.prompt))
        params = parsed.sampling_for_prompt(len(prompt_ids), self.state.context_length)
        request = GenerationRequest(request_id=parsed.request_id, tenant_id=parsed.tenant_id,
                                    weight=parsed.weight, prompt_token_ids=prompt_ids, params=params)
        if self.state.draining:
            raise BadRequest(503, "This inference replica is shutting down.", code="overloaded",
                             type_="server_error", retry_after=1)
        try:
            stream = self.state.engine.submit(request)
        except InvalidRequest as exc:
            raise BadRequest(400, str(exc), code="invalid_request")
        except TenantQueueFull as exc:
            raise BadRequest(429, str(exc), code="rate_limit_exceeded", type_="rate_limit_error",
                             retry_after=exc.retry_after)
        except (EngineOverloaded, EngineStopped) as exc:
            raise BadRequest(503, str(exc), code="overloaded", type_="server_error", retry_after=exc.retry_after)
        reply = _Reply(chat=chat, model=self.state.model_name, prompt_tokens=len(prompt_ids), parsed=parsed,
                       metrics=self.state.metrics)
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, stream, asyncio.current_task()))
        work = len(prompt_ids) + params.max_tokens
        self.state.outstanding_tokens += work
        self.state.open_requests += 1
        try:
            if parsed.stream:
                await reply.stream(stream, send)
            else:
                await reply.whole(stream, send)
        except asyncio.CancelledError:
            client_left = watcher.done() and not watcher.cancelled() and watcher.exception() is None \
                and watcher.result()
            # Our own cancel because the client left: nothing to answer, not an error. Any other
            # cancel (shutdown), alone or on top of ours, propagates.
            if not client_left or asyncio.current_task().uncancel() > 0:
                raise
        finally:
            stream.cancel()  # no-op when finished; frees the cache at once when not
            watcher.cancel()
            self.state.outstanding_tokens -= work
            self.state.open_requests -= 1


class _Reply:
    """Formats engine events as OpenAI responses (streamed or whole)."""

    def __init__(self, *, chat: bool, model: str, prompt_tokens: int, parsed: ParsedRequest, metrics=None):
        self.chat, self.model, self.prompt_tokens = chat, model, prompt_tokens
        self.metrics = metrics
        self.submitted = self.last_token_at = time.monotonic()
        self.completion_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.include_usage = parsed.include_usage

    def chunk(self, text: str, finish_reason: str | None, tokens: int, *, first: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            payload = protocol.chat_chunk(self.completion_id, self.created, self.model, delta=delta,
                                          finish_reason=finish_reason)
        else:
            payload = protocol.completion_chunk(self.completion_id, self.created, self.model, text=text,
                                                finish_reason=finish_reason)
        payload["fairway"] = {"tokens": tokens, "prompt_tokens": self.prompt_tokens} if first else {"tokens": tokens}
        return payload

    def _observe(self, tokens: int, tokens_before: int) -> None:
        if self.metrics is None or not tokens:
            return
        now = time.monotonic()
        if tokens_before == 0:
            self.metrics.ttft.observe(now - self.submitted)
        else:
            self.metrics.inter_token.observe((now - self.last_token_at) / tokens)
        self.last_token_at = now

    async def stream(self, stream, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        completion_tokens = 0
        await _send_event(send, self.chunk("", None, 0, first=True))
        try:
            async for event in stream:
                self._observe(event.tokens, completion_tokens)
                completion_tokens += event.tokens
                await _send_event(send, self.chunk(event.text, event.finish_reason, event.tokens))
        except (EngineOverloaded, EngineStopped) as exc:
            error = protocol.error_body(str(exc), type_="server_error", code="overloaded")
            await _send_event(send, error)
            return await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.include_usage:
            await _send_event(send, protocol.usage_chunk(self.completion_id, self.created, self.model, chat=self.chat,
                                                         usage_=protocol.usage(self.prompt_tokens, completion_tokens)))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def whole(self, stream, send):
        texts, completion_tokens, finish_reason = [], 0, "stop"
        try:
            async for event in stream:
                self._observe(event.tokens, completion_tokens)
                texts.append(event.text)
                completion_tokens += event.tokens
                finish_reason = event.finish_reason or finish_reason
        except (EngineOverloaded, EngineStopped) as exc:
            raise BadRequest(503, str(exc), code="overloaded", type_="server_error", retry_after=exc.retry_after)
        build = protocol.chat_completion if self.chat else protocol.text_completion
        body = build(self.completion_id, self.created, self.model, text="".join(texts), finish_reason=finish_reason,
                     usage_=protocol.usage(self.prompt_tokens, completion_tokens))
        await _send_json(send, 200, body)


async def _cancel_on_disconnect(receive, stream, serving_task: asyncio.Task) -> bool:
    """Wait for the client to leave; then cancel its generation and the task serving it (True)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.cancel()
            serving_task.cancel()
            return True


async def _read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, "Request body too large.", code="request_too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_event(send, payload: dict) -> None:
    await send({"type": "http.response.body", "body": protocol.sse_data(payload), "more_body": True})


async def _send_json(send, status: int, payload: dict, headers: dict | None = None) -> None:
    await _send(send, status, json.dumps(payload).encode(), "application/json", headers)


async def _send(send, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
    raw_headers = [(b"content-type", content_type.encode())]
    raw_headers += [(name.lower().encode(), str(value).encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

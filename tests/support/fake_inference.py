"""FakeInferenceService: a FAKE inference backend speaking Fairway's internal protocol.

It generates nothing: it streams scripted tokens. Used by gateway unit tests and the gateway
overhead benchmark only; every test of real generation uses the real engine.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from inference import protocol

MODEL = "fake-model"


@dataclass
class FakeScript:
    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    token_delay: float = 0.0
    finish_reason: str = "stop"
    prompt_tokens: int | None = 7  # None: count the prompt with the tiny tokenizer (as the real service does)
    fail_after: int | None = None  # send an in-stream error after this many tokens
    reject: tuple[int, dict] | None = None  # answer (status, body) instead of streaming
    token: str = "test-inference-token"
    serve_tokenizer: bool = True  # answer GET /v1/tokenizer with the tiny tokenizer (tests/support/tiny_model)
    context_length: int = 512
    health_status: str = "ok"  # "ok" | "draining" | "down" (answers 503) — replica routing tests
    outstanding_tokens: int = 0  # the load this replica reports


_TOKENIZER: dict = {}


def tokenizer_payload(context_length: int) -> dict:
    """The tiny tokenizer in the shape `GET /v1/tokenizer` serves (built once per process, ~1 s)."""
    if "payload" not in _TOKENIZER:
        from tests.support.tiny_model import build_tokenizer

        tokenizer = build_tokenizer()
        _TOKENIZER["payload"] = {"model": MODEL, "chat_template": tokenizer.chat_template,
                                 "special_tokens": tokenizer.special_tokens_map,
                                 "tokenizer_json": tokenizer.backend_tokenizer.to_str()}
    return {**_TOKENIZER["payload"], "context_length": context_length}


def count_prompt(body: dict, context_length: int) -> int:
    if "counter" not in _TOKENIZER:
        from gateway.tokens import PromptCounter

        _TOKENIZER["counter"] = PromptCounter.from_payload(tokenizer_payload(context_length))
    counter = _TOKENIZER["counter"]
    return counter.chat_tokens(body["messages"]) if "messages" in body else counter.text_tokens(body["prompt"])


class FakeInferenceService:
    def __init__(self, script: FakeScript | None = None):
        self.script = script or FakeScript()
        self.requests: list[dict] = []  # (headers, body) of each generation request
        self.disconnects = 0
        self.completed = 0
        self._lock = threading.Lock()
        self.disconnected = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if headers.get("authorization") != f"Bearer {self.script.token}":
            return await _json(send, 401, protocol.error_body("bad token", type_="invalid_request_error",
                                                             code="invalid_service_token"))
        if scope["path"] == "/v1/models":
            return await _json(send, 200, {"object": "list", "data": [protocol.model_card(MODEL, 0)]})
        if scope["path"] == "/health":
            status = 503 if self.script.health_status == "down" else 200
            return await _json(send, status, {"status": self.script.health_status, "model": MODEL,
                                              "context_length": self.script.context_length, "started_at": 0,
                                              "load": {"outstanding_tokens": self.script.outstanding_tokens}})
        if scope["path"] == "/v1/tokenizer" and self.script.serve_tokenizer:
            return await _json(send, 200, tokenizer_payload(self.script.context_length))
        if scope["path"] not in ("/v1/chat/completions", "/v1/completions"):
            return await _json(send, 404, protocol.error_body("no such route", type_="invalid_request_error",
                                                             code="not_found"))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self._lock:
            self.requests.append({"headers": headers, "body": json.loads(body)})
        if self.script.reject:
            status, payload = self.script.reject
            return await _json(send, status, payload, {"retry-after": "3"} if status in (429, 503) else None)
        await self._stream(scope["path"] == "/v1/chat/completions", receive, send, json.loads(body))

    async def _stream(self, chat: bool, receive, send, body: dict):
        script = self.script
        tokens = list(script.tokens)
        if isinstance(body.get("max_tokens"), int) and len(tokens) > body["max_tokens"]:
            tokens = tokens[:body["max_tokens"]]  # like the real service: never more than max_tokens
        prompt_tokens = script.prompt_tokens if script.prompt_tokens is not None else count_prompt(
            body, script.context_length)
        disconnect = asyncio.ensure_future(_wait_disconnect(receive))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        created = int(time.time())

        def chunk(text, finish=None, **extra):
            payload = (protocol.chat_chunk("chatcmpl-fake", created, MODEL, delta={"content": text} if text else {},
                                           finish_reason=finish) if chat else
                       protocol.completion_chunk("cmpl-fake", created, MODEL, text=text, finish_reason=finish))
            payload["fairway"] = extra
            return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"

        try:
            await send({"type": "http.response.body", "body": chunk("", tokens=0, prompt_tokens=prompt_tokens),
                        "more_body": True})
            for index, text in enumerate(tokens):
                if script.token_delay:
                    await asyncio.wait([disconnect], timeout=script.token_delay)
                if disconnect.done():
                    with self._lock:
                        self.disconnects += 1
                    self.disconnected.set()
                    return
                if script.fail_after is not None and index == script.fail_after:
                    error = protocol.error_body("engine exploded", type_="server_error", code="engine_error")
                    body = b"data: " + json.dumps(error).encode() + b"\n\n"
                    return await send({"type": "http.response.body", "body": body, "more_body": False})
                last = index == len(tokens) - 1
                finish = "length" if len(tokens) < len(script.tokens) else script.finish_reason
                await send({"type": "http.response.body", "more_body": True,
                            "body": chunk(text, finish if last else None, tokens=1)})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            with self._lock:
                self.completed += 1
        finally:
            disconnect.cancel()


async def _wait_disconnect(receive):
    while (await receive())["type"] != "http.disconnect":
        pass


async def _json(send, status, payload, headers=None):
    raw = [(b"content-type", b"application/json")] + [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

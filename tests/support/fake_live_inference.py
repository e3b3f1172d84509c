"""FakeLiveInference: a FAKE inference service whose GET /health reports *live* engine stats.

It generates nothing (scripted tokens, like FakeInferenceService). Its stats are computed from the
requests it is streaming at that moment: per-tenant running and queued (at most `max_num_seqs` run,
the rest wait), tokens per second over the last 2 s, fair-share counters (tokens ÷ weight), a KV-cache
figure proportional to running work, and a step counter that moves on every call. For dashboard tests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

from inference import protocol
from tests.support.fake_inference import MODEL, FakeInferenceService, FakeScript, _json

KV_TOKENS_PER_SEQUENCE = 96


class FakeLiveInference(FakeInferenceService):
    def __init__(self, script: FakeScript | None = None, *, max_num_seqs: int = 2, kv_total_tokens: int = 1024):
        super().__init__(script or FakeScript(tokens=[" tok"] * 40, token_delay=0.05))
        self.max_num_seqs, self.kv_total_tokens = max_num_seqs, kv_total_tokens
        self.running: Counter[str] = Counter()
        self.queued: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.weights: dict[str, float] = {}
        self.generated = self.steps = self.health_calls = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/health":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if headers.get("authorization") != f"Bearer {self.script.token}":
                return await _json(send, 401, protocol.error_body("bad token", type_="invalid_request_error",
                                                                 code="invalid_service_token"))
            self.health_calls += 1
            return await _json(send, 200, self.health())
        return await super().__call__(scope, receive, send)

    async def _stream(self, chat, receive, send, body):
        headers = self.requests[-1]["headers"]  # appended by __call__ just before this call, no await between
        tenant = headers.get(protocol.TENANT_HEADER, "unknown")
        self.weights[tenant] = float(headers.get(protocol.WEIGHT_HEADER, "1"))
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_num_seqs)
        self.queued[tenant] += 1
        async with self._slots:
            self.queued[tenant] -= 1
            self.running[tenant] += 1
            try:
                await super()._stream(chat, receive, self._counting(send, tenant), body)
            finally:
                self.running[tenant] -= 1

    def _counting(self, send, tenant: str):
        async def counting_send(message):
            if message.get("type") == "http.response.body" and message.get("more_body"):
                self.generated += 1
                self.served[tenant] += 1
                self._recent.append((time.monotonic(), 1))
            await send(message)
        return counting_send

    def health(self) -> dict:
        self.steps += 1
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > 2.0:
            self._recent.popleft()
        running, queued = sum(self.running.values()), sum(self.queued.values())
        tenants = {t: {"queued": self.queued[t], "running": self.running[t],
                       "virtual_counter": round(self.served[t] / self.weights.get(t, 1.0), 3),
                       "weight": self.weights.get(t, 1.0)}
                   for t in sorted(set(self.weights))}
        return {"status": "ok", "model": MODEL, "device": "fake", "context_length": self.script.context_length,
                "started_at": 0, "load": {"outstanding_tokens": running * 40},
                "engine": {"policy": "fair (FAKE)", "running": running, "queued": queued, "preemptions": 0,
                           "tenants": tenants, "steps": self.steps, "generated_tokens": self.generated,
                           "tokens_per_s": round(sum(n for _, n in self._recent) / 2.0, 2),
                           "kv_cache": {"used_tokens": min(self.kv_total_tokens, running * KV_TOKENS_PER_SEQUENCE),
                                        "total_tokens": self.kv_total_tokens, "bytes": self.kv_total_tokens * 4096,
                                        "block_size": 16},
                           "max_num_seqs": self.max_num_seqs, "max_model_len": self.script.context_length,
                           "alive": True}}

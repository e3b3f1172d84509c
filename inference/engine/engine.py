"""The engine: glue between the scheduler, the runner and the streams, plus its thread.

One background thread loops: take cancellations → scheduler.schedule() → runner.forward() and
sample() → detokenize, check stop conditions → hand the step's events to the streams. A new
request joins the batch at the next step; a finished or cancelled one leaves at once and its
cache blocks go back to the pool. submit() and cancel() run on the caller's thread and only
touch the scheduler's queues under a short lock; the forward pass runs without it.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import sampling
from .cache import BlockAllocator
from .detokenizer import IncrementalDetokenizer
from .errors import EngineError, EngineOverloaded, EngineStopped, InvalidRequest
from .policy import make_policy
from .runner import ModelRunner
from .scheduler import Scheduler, SchedulerConfig, StepPlan
from .sequence import GenerationRequest, Sequence, Status, StreamEvent
from .stream import _END, RequestStream, deliver

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.05  # how often an idle loop with queued requests re-checks queue wait limits
THROUGHPUT_WINDOW_S = 10.0


@dataclass(frozen=True)
class EngineConfig:
    max_num_seqs: int = 32  # sequences in the running batch
    kv_cache_tokens: int = 16384  # fixed KV budget in tokens (rounded down to whole blocks)
    max_prefill_tokens_per_step: int = 256  # prompt tokens per step; also the prompt chunk size
    max_queue_per_tenant: int = 64
    max_queue_total: int = 1024
    max_queue_wait_s: float = 60.0  # a request not admitted by then ends with EngineOverloaded
    policy: str = "vtc"  # "vtc" | "fcfs"
    w_in: float = 1.0
    w_out: float = 2.0
    device: str = "cpu"
    block_size: int = 16
    max_model_len: int = 0  # prompt + max_tokens limit; 0 = min(model positions, kv_cache_tokens)
    batch_invariant: bool = True  # bit-identical outputs whatever the batch; costs speed below 4 rows/step


@dataclass(frozen=True)
class Completion:
    """A finished request, as Engine.generate() returns it."""

    request_id: str
    token_ids: list[int]
    text: str
    finish_reason: str | None
    events: list[StreamEvent]


@dataclass
class _Active:
    seq: Sequence
    stream: RequestStream
    detokenizer: IncrementalDetokenizer
    unreported: list[int] = field(default_factory=list)  # generated ids not yet in an event


def _eos_token_ids(model, tokenizer) -> frozenset[int]:
    ids = [tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)]
    flat = [i for x in ids for i in (x if isinstance(x, (list, tuple)) else [x])]
    return frozenset(i for i in flat if i is not None)


class Engine:
    def __init__(self, model, tokenizer, config: EngineConfig = EngineConfig(),
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.tokenizer = tokenizer
        self.clock = clock
        self.allocator = BlockAllocator(config.kv_cache_tokens, config.block_size)
        positions = getattr(model.config, "max_position_embeddings", None) or self.allocator.capacity_tokens
        self.max_model_len = min(config.max_model_len or positions, positions, self.allocator.capacity_tokens)
        self.runner = ModelRunner(model, self.allocator.num_blocks, config.block_size, self.max_model_len,
                                  config.device, config.batch_invariant)
        self.scheduler = Scheduler(
            SchedulerConfig(config.max_num_seqs, config.max_prefill_tokens_per_step, config.max_queue_per_tenant,
                            config.max_queue_total, config.max_queue_wait_s),
            self.allocator, make_policy(config.policy, config.w_in, config.w_out), clock)
        self.eos_token_ids = _eos_token_ids(model, tokenizer)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._active: dict[int, _Active] = {}
        self._cancelled: list[Sequence] = []
        self._seq_ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dead: str | None = None  # why the engine no longer accepts work
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens generated) per step
        self.steps = 0
        self.generated_tokens = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fairway-engine", daemon=True)
            self._thread.start()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._dead is None

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_all("inference engine is shutting down")

    def _run(self) -> None:
        while not self._stopping:
            try:
                plan = self.step()
            except Exception:
                logger.exception("engine step failed; failing all requests")
                self._fail_all("inference engine failed")
                return
            if not plan.chunks:
                self._wake.wait(IDLE_POLL_S if self.scheduler.waiting else None)
                self._wake.clear()

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._dead = reason
            active, self._active = list(self._active.values()), {}
            for a in active:
                self.scheduler.finish(a.seq, None)
                self.runner.release(a.seq.seq_id)
        deliver({a.stream: [EngineStopped(reason, retry_after=5.0)] for a in active})

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> RequestStream:
        """Queue a request; call on the asyncio loop that will iterate the stream (`async for`).
        Raises TenantQueueFull, EngineOverloaded, EngineStopped or InvalidRequest at once."""
        return self._add(request, asyncio.get_running_loop())

    def submit_blocking(self, request: GenerationRequest) -> RequestStream:
        """Like submit() for plain threads: iterate the stream with `for` (it blocks)."""
        return self._add(request, None)

    def _add(self, request: GenerationRequest, loop) -> RequestStream:
        if self._dead or self._stopping:
            raise EngineStopped(self._dead, retry_after=5.0)
        self._validate(request)
        with self._lock:
            seq = Sequence(next(self._seq_ids), request, self.clock())
            stream = RequestStream(request.request_id, lambda: self._cancel(seq), loop)
            self.scheduler.add(seq)
            self._active[seq.seq_id] = _Active(
                seq, stream, IncrementalDetokenizer(self.tokenizer, request.prompt_token_ids, request.params.stop))
        self._wake.set()
        return stream

    def _validate(self, request: GenerationRequest) -> None:
        sampling.validate(request.params)
        prompt = request.prompt_token_ids
        if not prompt:
            raise InvalidRequest("prompt must contain at least one token")
        if not all(0 <= t < self.runner.vocab_size for t in prompt):
            raise InvalidRequest("prompt contains token ids outside the vocabulary")
        if not (request.weight > 0 and math.isfinite(request.weight)):
            raise InvalidRequest("tenant weight must be a positive number")
        if len(prompt) + request.params.max_tokens > self.max_model_len:
            raise InvalidRequest(f"prompt ({len(prompt)} tokens) + max_tokens ({request.params.max_tokens}) "
                                 f"exceeds the context limit of {self.max_model_len} tokens")

    def _cancel(self, seq: Sequence) -> None:
        with self._lock:
            if not seq.cancelled:
                seq.cancelled = True
                self._cancelled.append(seq)
        self._wake.set()

    # -- the step -----------------------------------------------------------------------------

    def step(self) -> StepPlan:
        """One iteration: schedule, run the model once, stream the results. Public so tests and
        benchmarks can drive the engine by hand (without start())."""
        out: dict[RequestStream, list] = {}
        with self._lock:
            for seq in self._cancelled:
                self._end(seq, None, out)
            self._cancelled.clear()
            plan = self.scheduler.schedule()
            for seq in plan.expired:
                wait = self.config.max_queue_wait_s
                error = EngineOverloaded(f"request waited more than {wait:g}s in the queue", retry_after=wait)
                self._end(seq, None, out, error)
        if plan.chunks:
            logits, sampled = self.runner.forward(plan.chunks)
            sampled_tokens = dict(zip((c.seq.seq_id for c in sampled), self.runner.sample(logits, sampled)))
            with self._lock:
                for chunk in plan.chunks:
                    token = sampled_tokens.get(chunk.seq.seq_id)
                    if chunk.seq.status is Status.RUNNING:
                        self.scheduler.complete_chunk(chunk, token)
                        if token is not None and not chunk.seq.cancelled:
                            self._on_token(self._active[chunk.seq.seq_id], token, out)
                self._record_throughput(len(sampled_tokens))
        deliver(out)
        return plan

    def _on_token(self, active: _Active, token: int, out: dict) -> None:
        seq, params = active.seq, active.seq.params
        active.unreported.append(token)
        reason = None
        if token in self.eos_token_ids and not params.ignore_eos:
            reason, text = "stop", active.detokenizer.flush()
        else:
            text = active.detokenizer.add_token(token)
            if active.detokenizer.stopped:
                reason = "stop"
            elif seq.num_output_tokens >= params.max_tokens:
                reason, text = "length", text + active.detokenizer.flush()
        if text or reason:
            out.setdefault(active.stream, []).append(
                StreamEvent(text, len(active.unreported), reason, tuple(active.unreported)))
            active.unreported.clear()
        if reason:
            self._end(seq, reason, out)

    def _end(self, seq: Sequence, reason: str | None, out: dict, error: EngineError | None = None) -> None:
        """Finish seq (under the lock): free its cache now and close its stream."""
        active = self._active.pop(seq.seq_id, None)
        self.scheduler.finish(seq, reason)
        self.runner.release(seq.seq_id)
        if active is not None:
            out.setdefault(active.stream, []).append(error if error is not None else _END)

    def _record_throughput(self, tokens: int) -> None:
        now = self.clock()
        self.steps += 1
        self.generated_tokens += tokens
        self._recent.append((now, tokens))
        while self._recent and self._recent[0][0] < now - THROUGHPUT_WINDOW_S:
            self._recent.popleft()

    # -- synchronous use and stats ------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Run requests to completion on the calling thread (tests, benchmarks); no start() needed."""
        if self.is_running:
            raise RuntimeError("generate() drives the engine itself; do not start() it too")
        streams = [self.submit_blocking(r) for r in requests]
        while self._active:
            self.step()
        completions = []
        for request, stream in zip(requests, streams):
            events = list(stream)
            completions.append(Completion(
                request.request_id, [t for e in events for t in e.token_ids], "".join(e.text for e in events),
                events[-1].finish_reason if events else None, events))
        return completions

    # -- fair share across replicas (inference/fairshare.py) ---------------------------------

    def service_given(self) -> dict[str, float]:
        """Weighted service this engine gave per tenant (a copy; safe from any thread)."""
        return dict(self.scheduler.policy.service)

    def set_peer_service(self, service: dict[str, float]) -> None:
        """The other replicas' service per tenant; a new dict each time, swapped in whole."""
        self.scheduler.policy.peer_service = service

    def stats(self) -> dict:
        with self._lock:
            stats = self.scheduler.stats()
            recent = list(self._recent)
        span = self.clock() - recent[0][0] if recent else 0.0
        stats.update(
            kv_cache={"used_tokens": self.allocator.used_tokens, "total_tokens": self.allocator.capacity_tokens,
                      "bytes": self.runner.kv_cache_bytes, "block_size": self.allocator.block_size},
            tokens_per_s=round(sum(n for _, n in recent) / span, 2) if span > 0 else 0.0,
            steps=self.steps, generated_tokens=self.generated_tokens, max_num_seqs=self.config.max_num_seqs,
            max_model_len=self.max_model_len, alive=self._dead is None)
        return stats

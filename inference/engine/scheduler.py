"""Decides each step's work: which running sequences advance, who is admitted, who is preempted.

Pure Python (no torch), driven by an injectable clock so tests never sleep.

Per step: (1) waiting requests older than max_queue_wait_s that were never admitted expire;
(2) every running sequence gets its next chunk: one token when decoding, or the next prompt
chunk if the prefill token budget still has room; when its cache cannot grow, the policy picks
victims to preempt (recompute later) until it can; (3) while batch slots, prefill budget and
cache remain, the policy picks the next tenant and its head request is admitted with cache
blocks for all its known tokens (VTC may preempt one request per step to let in a tenant
that just arrived from idle). Fair-share rules live in policy.py.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .cache import BlockAllocator
from .errors import EngineOverloaded, TenantQueueFull
from .policy import FairnessPolicy
from .sequence import Sequence, Status


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int = 32
    max_prefill_tokens_per_step: int = 256  # also the fixed prompt chunk size
    max_queue_per_tenant: int = 64
    max_queue_total: int = 1024
    max_queue_wait_s: float = 60.0


@dataclass(frozen=True)
class ScheduledChunk:
    seq: Sequence
    num_new_tokens: int
    sample: bool  # a token is drawn after this chunk
    prefill: bool  # prompt tokens (count against the prefill budget); else one generated token


@dataclass
class StepPlan:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    expired: list[Sequence] = field(default_factory=list)  # waited too long; engine ends their streams

    def __bool__(self) -> bool:
        return bool(self.chunks)


class Scheduler:
    def __init__(self, config: SchedulerConfig, allocator: BlockAllocator, policy: FairnessPolicy,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.allocator = allocator
        self.policy = policy
        self.clock = clock
        self.waiting: dict[str, deque[Sequence]] = {}  # only tenants with queued requests
        self.running: list[Sequence] = []  # admission order
        self._arrived_idle: set[str] = set()  # tenants queued while idle, not yet admitted since
        self.num_preemptions = 0
        self._seconds_per_finish = 1.0  # EMA of time between completions, for retry_after
        self._last_finish: float | None = None

    # -- queue side -------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return sum(len(q) for q in self.waiting.values())

    def add(self, seq: Sequence) -> None:
        """Queue a new request or raise TenantQueueFull / EngineOverloaded at once."""
        queued = len(self.waiting.get(seq.tenant_id, ()))
        if queued >= self.config.max_queue_per_tenant:
            raise TenantQueueFull(retry_after=self._retry_after(queued))
        total = self.num_waiting
        if total >= self.config.max_queue_total:
            raise EngineOverloaded(retry_after=self._retry_after(total))
        self.policy.set_weight(seq.tenant_id, seq.request.weight)
        self._enqueue(seq, front=False)

    def _enqueue(self, seq: Sequence, front: bool) -> None:
        queue = self.waiting.get(seq.tenant_id)
        if queue is None:  # tenant becomes backlogged
            running = {s.tenant_id for s in self.running}
            self.policy.on_backlogged(seq.tenant_id, self.waiting.keys(), running)
            if not front and seq.tenant_id not in running:
                self._arrived_idle.add(seq.tenant_id)
            queue = self.waiting[seq.tenant_id] = deque()
        seq.status = Status.WAITING
        queue.appendleft(seq) if front else queue.append(seq)

    def _dequeue(self, seq: Sequence) -> None:
        queue = self.waiting[seq.tenant_id]
        queue.remove(seq)
        if not queue:
            del self.waiting[seq.tenant_id]
            self._arrived_idle.discard(seq.tenant_id)

    def _retry_after(self, queue_length: int) -> float:
        """Rough time for the queue ahead to drain, from the recent completion rate."""
        return float(min(60, max(1, math.ceil(queue_length * self._seconds_per_finish))))

    # -- the step ---------------------------------------------------------------------------

    def schedule(self) -> StepPlan:
        plan = StepPlan()
        self._expire(plan)
        scheduled: dict[int, ScheduledChunk] = {}
        for seq in list(self.running):
            if seq.status is not Status.RUNNING:  # preempted earlier in this loop
                continue
            chunk = self._next_chunk(seq)
            if chunk.prefill and chunk.num_new_tokens > self._budget_left(scheduled):
                continue  # waits for a step with room; a chunk is never split differently
            if self._make_room(seq, seq.num_computed_tokens + chunk.num_new_tokens, plan, scheduled):
                scheduled[seq.seq_id] = chunk
        self._admit(scheduled, plan)
        plan.chunks = list(scheduled.values())
        return plan

    def _next_chunk(self, seq: Sequence) -> ScheduledChunk:
        num_new = seq.next_chunk(self.config.max_prefill_tokens_per_step)
        prefill = seq.num_computed_tokens < seq.num_prompt_tokens
        return ScheduledChunk(seq, num_new, seq.samples_after(num_new), prefill)

    def _budget_left(self, scheduled: dict[int, ScheduledChunk]) -> int:
        used = sum(c.num_new_tokens for c in scheduled.values() if c.prefill)
        return self.config.max_prefill_tokens_per_step - used

    def _make_room(self, seq: Sequence, num_tokens: int, plan: StepPlan,
                   scheduled: dict[int, ScheduledChunk]) -> bool:
        """Grow seq's cache to num_tokens, preempting policy-chosen victims if needed.
        Returns False when seq itself had to be preempted."""
        while not self.allocator.can_grow(seq, num_tokens):
            victim = self.policy.pick_victim(self.running)
            scheduled.pop(victim.seq_id, None)
            self._preempt(victim, plan)
            if victim is seq:
                return False
        self.allocator.grow(seq, num_tokens)
        return True

    def _preempt(self, seq: Sequence, plan: StepPlan) -> None:
        self.running.remove(seq)
        self.allocator.free(seq)
        seq.num_preemptions += 1
        self.num_preemptions += 1
        plan.preempted.append(seq)
        self._enqueue(seq, front=True)

    def _admit(self, scheduled: dict[int, ScheduledChunk], plan: StepPlan) -> None:
        may_preempt = True  # at most one admission per step may preempt for fairness (bounds the waste)
        while self.waiting:
            heads = {tenant: queue[0] for tenant, queue in self.waiting.items()}
            seq = heads[self.policy.pick_tenant(heads, self._running_per_tenant())]
            chunk = self._next_chunk(seq)
            if chunk.num_new_tokens > self._budget_left(scheduled):
                return
            # Admit only when a slot is free and the whole known sequence fits in the cache (a
            # half-admitted prompt would only be preempted again); otherwise stop rather than skip
            # to someone else, so the policy's order holds. A full batch may make room for a tenant
            # that just arrived from idle (policy.fairness_victim); a full cache never does, since
            # cache pressure already preempts by the same counters and the two would take turns.
            if len(self.running) >= self.config.max_num_seqs and may_preempt:
                arrived_idle = seq.tenant_id in self._arrived_idle
                victim = self.policy.fairness_victim(seq, self.running) if arrived_idle else None
                if victim is not None:
                    scheduled.pop(victim.seq_id, None)
                    self._preempt(victim, plan)
                    may_preempt = False
            if len(self.running) >= self.config.max_num_seqs or not self.allocator.can_grow(seq, seq.num_tokens):
                return
            self.allocator.grow(seq, seq.num_tokens)
            self._dequeue(seq)
            self._arrived_idle.discard(seq.tenant_id)
            seq.status = Status.RUNNING
            self.running.append(seq)
            if seq.admitted_at is None:
                seq.admitted_at = self.clock()
            if not seq.prompt_charged:
                self.policy.charge_prompt(seq)
                seq.prompt_charged = True
            scheduled[seq.seq_id] = chunk

    def _running_per_tenant(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for seq in self.running:
            counts[seq.tenant_id] = counts.get(seq.tenant_id, 0) + 1
        return counts

    def _expire(self, plan: StepPlan) -> None:
        deadline = self.clock() - self.config.max_queue_wait_s
        for queue in list(self.waiting.values()):
            for seq in [s for s in queue if s.admitted_at is None and s.arrival < deadline]:
                self.finish(seq, None)
                plan.expired.append(seq)

    # -- results ----------------------------------------------------------------------------

    def complete_chunk(self, chunk: ScheduledChunk, token_id: int | None) -> None:
        """Record a finished forward for chunk; token_id is the sampled token when chunk.sample."""
        seq = chunk.seq
        seq.num_computed_tokens += chunk.num_new_tokens
        if token_id is not None:
            seq.token_ids.append(token_id)
            self.policy.charge_output(seq)

    def finish(self, seq: Sequence, reason: str | None) -> None:
        """End seq (done, cancelled, expired): leave queue or batch and free its cache at once."""
        if seq.status is Status.FINISHED:
            return
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
            now = self.clock()
            if self._last_finish is not None:
                self._seconds_per_finish = 0.9 * self._seconds_per_finish + 0.1 * (now - self._last_finish)
            self._last_finish = now
        else:
            self._dequeue(seq)
        self.allocator.free(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason

    def stats(self) -> dict:
        tenants = set(self.policy.counters) | set(self.waiting)
        running = self._running_per_tenant()
        return {
            "policy": self.policy.name,
            "running": len(self.running),
            "queued": self.num_waiting,
            "preemptions": self.num_preemptions,
            "tenants": {
                t: {"queued": len(self.waiting.get(t, ())), "running": running.get(t, 0),
                    "service": round(self.policy.service.get(t, 0.0), 3),
                    "virtual_counter": round(self.policy.counters.get(t, 0.0), 3),
                    "peer_service": round(self.policy.peer_service.get(t, 0.0), 3),
                    "weight": self.policy.weights.get(t, 1.0)}
                for t in sorted(tenants)
            },
        }

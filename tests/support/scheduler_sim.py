"""A pure-Python driver for the scheduler: a fake clock and a 'model' that emits token 1 forever."""
from inference.engine.cache import BlockAllocator
from inference.engine.policy import make_policy
from inference.engine.scheduler import Scheduler, SchedulerConfig
from inference.engine.sequence import GenerationRequest, SamplingParams, Sequence

W_IN, W_OUT = 1.0, 2.0


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Sim:
    """Drives a Scheduler as the engine would, with a 'model' that emits token 1 forever."""

    def __init__(self, policy="vtc", kv_tokens=1 << 16, max_num_seqs=4, budget=64, **config):
        self.clock = FakeClock()
        config = {"max_queue_per_tenant": 10_000, "max_queue_total": 100_000, **config}
        self.sched = Scheduler(SchedulerConfig(max_num_seqs=max_num_seqs, max_prefill_tokens_per_step=budget, **config),
                               BlockAllocator(kv_tokens, 16), make_policy(policy, W_IN, W_OUT), self.clock)
        self.ids = 0
        self.service: dict[str, float] = {}  # weighted tokens actually computed, per tenant
        self.admitted_step: dict[int, int] = {}
        self.steps = 0

    def submit(self, tenant, prompt_len=20, max_tokens=20, weight=1.0):
        self.ids += 1
        seq = Sequence(self.ids, GenerationRequest(f"r{self.ids}", tenant, weight, [5] * prompt_len,
                                                   SamplingParams(max_tokens=max_tokens)), self.clock())
        self.sched.add(seq)
        return seq

    def step(self):
        plan = self.sched.schedule()
        self.steps += 1
        for chunk in plan.chunks:
            seq = chunk.seq
            if seq.seq_id not in self.admitted_step:
                self.admitted_step[seq.seq_id] = self.steps
                self.service[seq.tenant_id] = self.service.get(seq.tenant_id, 0) + W_IN * seq.num_prompt_tokens
            self.sched.complete_chunk(chunk, 1 if chunk.sample else None)
            if chunk.sample:
                self.service[seq.tenant_id] += W_OUT
                if seq.num_output_tokens >= seq.params.max_tokens:
                    self.sched.finish(seq, "length")
        return plan

    def backlog(self, tenant):
        return len(self.sched.waiting.get(tenant, ()))


def keep_backlogged(sim, tenants, depth=8, **kw):
    for tenant in tenants:
        while sim.backlog(tenant) < depth:
            sim.submit(tenant, **kw)

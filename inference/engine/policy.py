"""Who is admitted next and who is preempted first: weighted VTC (fair share) or FCFS.

Weighted Virtual Token Counter (Sheng et al., "Fairness in Serving Large Language Models",
OSDI 2024). Every tenant t has a counter c_t of the service it received, normalised by its
weight: admitting a request adds w_in * prompt_tokens / weight_t, every generated token adds
w_out / weight_t. Requests wait in per-tenant FIFO queues; a tenant is *backlogged* while its
queue is non-empty. Admission always takes the head request of the backlogged tenant with the
smallest counter (ties: fewer running requests, then earliest arrival). When a tenant becomes
backlogged its counter is lifted to at least the smallest counter among the other backlogged tenants (or, if none, of
the tenants with running requests; if the engine is idle, to the largest counter), so time
spent idle is never banked as credit to be spent later at others' expense.

Guarantee (the paper's fairness theorem, weighted form): for any two tenants f, g backlogged
throughout an interval, |W_f/weight_f - W_g/weight_g| <= 2 * max(w_in * L_in, w_out * M), where
W is the weighted service (w_in * prompt + w_out * generated tokens) they received in the
interval, L_in the longest prompt and M the most tokens one batch can hold (the KV budget).
The bound does not grow with time, so over long intervals service converges to the weight
ratio; it holds while the engine keeps the batch full (work-conserving).

Admission alone cannot help a tenant that arrives while a flood holds every batch slot: the
paper's VTC would make it wait for the flood's next completion, which can be a whole
generation away. So when the tenant VTC picks has just arrived (it was idle: nothing queued,
nothing running) and every slot is taken, VTC preempts one running request of a tenant whose
counter is at least as large and that keeps another request running: the largest-counter
tenant's latest arrival, which has made the least progress. At most one admission per step may
preempt, only an idle tenant's arrival triggers it (tenants that stay busy rely on slots freeing
up, as in the paper, which keeps recomputation rare), and the victim's tenant always keeps a
request running, so it cannot preempt back.

Across replicas (several inference services behind the gateways): `service` is what this
replica gave each tenant; replicas publish it and each adds what the others gave (`peer_service`,
see inference/fairshare.py) to its own counter wherever VTC compares, lifts or chooses, so a
tenant cannot collect N shares by spreading its requests over N replicas. Local counters still
advance only with local service and local lifts; a tenant that is still running here when its
queue refills is lifted by local counters only (see VTCPolicy.on_backlogged).

Preemption (the KV cache ran out mid-generation): VTC takes from the tenant with the largest
counter, latest-arrived request first; FCFS takes the latest-arrived request. Preempted
requests return to the front of their tenant's queue and are not charged for the prompt again;
their recomputation is not charged either.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .sequence import Sequence


class FairnessPolicy:
    """Base: keeps per-tenant weighted service counters (reported by both policies)."""

    name = "base"

    def __init__(self, w_in: float = 1.0, w_out: float = 2.0):
        self.w_in = w_in
        self.w_out = w_out
        self.counters: dict[str, float] = {}  # virtual counters: service given here + lifts, per weight
        self.service: dict[str, float] = {}  # weighted service given here, per weight (published)
        self.weights: dict[str, float] = {}
        # The other replicas' service per tenant; replaced whole (never mutated) by another thread.
        self.peer_service: Mapping[str, float] = {}

    def local(self, tenant: str) -> float:
        return self.counters.get(tenant, 0.0)

    def effective(self, tenant: str, peer: Mapping[str, float] | None = None) -> float:
        """The tenant's counter with the service it received from the other replicas. Callers that
        compare several tenants pass one `peer` snapshot: another thread may swap peer_service."""
        peer = self.peer_service if peer is None else peer
        return self.counters.get(tenant, 0.0) + peer.get(tenant, 0.0)

    def set_weight(self, tenant: str, weight: float) -> None:
        self.weights[tenant] = weight
        self.counters.setdefault(tenant, 0.0)

    def charge_prompt(self, seq: Sequence) -> None:
        self._charge(seq.tenant_id, self.w_in * seq.num_prompt_tokens)

    def charge_output(self, seq: Sequence, num_tokens: int = 1) -> None:
        self._charge(seq.tenant_id, self.w_out * num_tokens)

    def _charge(self, tenant: str, cost: float) -> None:
        normalised = cost / self.weights.get(tenant, 1.0)
        self.counters[tenant] = self.counters.get(tenant, 0.0) + normalised
        self.service[tenant] = self.service.get(tenant, 0.0) + normalised

    def on_backlogged(self, tenant: str, backlogged: Iterable[str], running: Iterable[str]) -> None:
        """tenant's queue just became non-empty; backlogged/running list the *other* tenants."""

    def pick_tenant(self, heads: Mapping[str, Sequence], running: Mapping[str, int]) -> str:
        """The tenant whose head request is admitted next; running counts requests per tenant."""
        raise NotImplementedError

    def pick_victim(self, running: list[Sequence]) -> Sequence:
        raise NotImplementedError

    def fairness_victim(self, head: Sequence, running: list[Sequence]) -> Sequence | None:
        """A running sequence to preempt so that head (whose tenant has none running) gets in now."""
        return None


class FCFSPolicy(FairnessPolicy):
    """First come, first served across all tenants (the baseline VTC is measured against)."""

    name = "fcfs"

    def pick_tenant(self, heads: Mapping[str, Sequence], running: Mapping[str, int]) -> str:
        return min(heads, key=lambda t: (heads[t].arrival, heads[t].seq_id))

    def pick_victim(self, running: list[Sequence]) -> Sequence:
        return max(running, key=lambda s: (s.arrival, s.seq_id))


class VTCPolicy(FairnessPolicy):
    name = "vtc"

    def on_backlogged(self, tenant: str, backlogged: Iterable[str], running: Iterable[str]) -> None:
        running = set(running)
        # Idle here (nothing queued or running on this replica): lift its effective counter, so idle
        # time, here or anywhere, is never banked. Still running here (its queue only emptied for a
        # moment, e.g. between a client's requests): lift by local counters, the paper's rule on one
        # replica; a deficit from replicas it does not use is no idle credit and must not be erased,
        # or a tenant held to one replica would lose its share to a flood that also has the others.
        active_here = tenant in running
        peer = self.peer_service
        level = self.local if active_here else (lambda t: self.effective(t, peer))
        others = [level(t) for t in backlogged if t != tenant]
        if not others:
            others = [level(t) for t in running if t != tenant]
        if others:
            floor = min(others)
        else:  # nobody else here: nobody is owed anything, everyone restarts level
            known = self.counters.keys() | (set() if active_here else peer.keys())
            floor = max(map(level, known), default=0.0)
        if not active_here:
            floor -= peer.get(tenant, 0.0)  # what peers gave it already counts
        self.counters[tenant] = max(self.counters.get(tenant, 0.0), floor)

    def pick_tenant(self, heads: Mapping[str, Sequence], running: Mapping[str, int]) -> str:
        # Ties (a freshly lifted tenant equals the floor) go to the tenant with less running.
        peer = self.peer_service
        return min(heads, key=lambda t: (self.effective(t, peer), running.get(t, 0), heads[t].arrival, heads[t].seq_id))

    def pick_victim(self, running: list[Sequence]) -> Sequence:
        peer = self.peer_service
        return max(running, key=lambda s: (self.effective(s.tenant_id, peer), s.arrival, s.seq_id))

    def fairness_victim(self, head: Sequence, running: list[Sequence]) -> Sequence | None:
        held: dict[str, int] = {}
        for seq in running:
            held[seq.tenant_id] = held.get(seq.tenant_id, 0) + 1
        # Only from tenants at least as served that keep another request running, so the victim's
        # tenant can never preempt back.
        peer = self.peer_service
        floor = self.effective(head.tenant_id, peer)
        ahead = [s for s in running if held[s.tenant_id] >= 2 and self.effective(s.tenant_id, peer) >= floor]
        return self.pick_victim(ahead) if ahead else None


POLICIES = {"vtc": VTCPolicy, "fcfs": FCFSPolicy}


def make_policy(name: str, w_in: float = 1.0, w_out: float = 2.0) -> FairnessPolicy:
    try:
        return POLICIES[name](w_in, w_out)
    except KeyError:
        raise ValueError(f"unknown scheduling policy {name!r}; choose from {sorted(POLICIES)}") from None

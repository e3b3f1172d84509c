"""Fair share across replicas: the peer-service ledger and VTC on a global view (no Redis, no model).

The two-replica cases drive two schedulers side by side and exchange their published service
every few steps, as the registry heartbeat does between real replicas (tests/faults covers that
path with real processes).
"""
import os
import time
import uuid

import pytest

from inference.engine.policy import make_policy
from inference.fairshare import PeerServiceLedger, RecentlyServed
from tests.support.scheduler_sim import W_IN, W_OUT, FakeClock, Sim, keep_backlogged


def test_ledger_accumulates_growth_of_each_peer():
    ledger = PeerServiceLedger()
    assert ledger.observe({"b": {"x": 10.0}}) == {"x": 10.0}
    assert ledger.observe({"b": {"x": 25.0}, "c": {"x": 5.0, "y": 1.0}}) == {"x": 30.0, "y": 1.0}
    # Re-reading unchanged figures adds nothing; a malformed figure counts as no growth.
    assert ledger.observe({"b": {"x": 25.0}, "c": {"x": 5.0, "y": 1.0}}) == {"x": 30.0, "y": 1.0}
    assert ledger.observe({"b": {"x": "lots"}}) == {"x": 30.0, "y": 1.0}


def test_ledger_keeps_service_of_peers_that_died_or_restarted():
    ledger = PeerServiceLedger()
    ledger.observe({"b-1": {"x": 100.0}})
    assert ledger.observe({}) == {"x": 100.0}  # b-1 died: what it gave still counts
    # b restarts under a new id, counting from zero again: only growth is added.
    assert ledger.observe({"b-2": {"x": 3.0}}) == {"x": 103.0}


def test_ledger_forgets_long_gone_peers_without_dropping_their_service():
    clock = FakeClock()
    ledger = PeerServiceLedger(forget_after_s=60, clock=clock)
    ledger.observe({"b": {"x": 10.0}})
    clock.now += 61
    assert ledger.observe({}) == {"x": 10.0}
    assert "b" not in ledger._seen


def test_totals_returned_are_a_new_dict_each_time():
    ledger = PeerServiceLedger()
    first = ledger.observe({"b": {"x": 1.0}})
    ledger.observe({"b": {"x": 2.0}})
    assert first == {"x": 1.0}  # the engine thread may still hold the previous one


def test_vtc_ranks_a_tenant_served_elsewhere_behind():
    policy = make_policy("vtc", W_IN, W_OUT)
    for tenant in ("x", "y"):
        policy.set_weight(tenant, 1.0)
    policy.peer_service = {"x": 500.0}
    heads = {"x": _head("x", 1), "y": _head("y", 2)}
    assert policy.pick_tenant(heads, running={}) == "y"
    policy.peer_service = {}
    assert policy.pick_tenant(heads, running={}) == "x"  # earlier arrival wins a tie


def test_vtc_lift_counts_peer_service():
    policy = make_policy("vtc", W_IN, W_OUT)
    policy.set_weight("y", 1.0)
    policy.counters["y"] = 40.0
    policy.peer_service = {"x": 30.0}
    policy.on_backlogged("x", backlogged=["y"], running=[])
    assert policy.effective("x") == 40.0  # lifted to the floor, peers' service included
    assert policy.counters["x"] == 10.0


def test_service_is_published_without_lifts():
    policy = make_policy("vtc", W_IN, W_OUT)
    policy.set_weight("y", 2.0)
    policy.counters["z"] = 100.0
    policy.on_backlogged("y", backlogged=["z"], running=[])
    assert policy.counters["y"] == 100.0
    assert policy.service.get("y", 0.0) == 0.0


def _head(tenant, arrival):
    from inference.engine.sequence import GenerationRequest, SamplingParams, Sequence

    return Sequence(arrival, GenerationRequest(f"r{arrival}", tenant, 1.0, [5] * 4, SamplingParams(max_tokens=4)),
                    float(arrival))


class TwoReplicas:
    """Two schedulers side by side that exchange their published service every few steps."""

    def __init__(self, *, share: bool, max_num_seqs: int = 4, exchange_every: int = 5):
        self.a, self.b = Sim(max_num_seqs=max_num_seqs), Sim(max_num_seqs=max_num_seqs)
        self.ledgers = {"a": PeerServiceLedger(), "b": PeerServiceLedger()}
        self.share, self.exchange_every, self.steps = share, exchange_every, 0

    def step(self) -> None:
        self.a.step()
        self.b.step()
        self.steps += 1
        if self.share and self.steps % self.exchange_every == 0:
            self.a.sched.policy.peer_service = self.ledgers["a"].observe({"b": dict(self.b.sched.policy.service)})
            self.b.sched.policy.peer_service = self.ledgers["b"].observe({"a": dict(self.a.sched.policy.service)})

    def service(self) -> dict[str, float]:
        return {t: self.a.service.get(t, 0) + self.b.service.get(t, 0) for t in ("x", "y")}


def _two_replicas(*, share: bool, steps: int = 800):
    """Tenant x floods replicas a and b; tenant y (equal weight) floods only a."""
    pair = TwoReplicas(share=share)
    for _ in range(steps):
        keep_backlogged(pair.a, ["x", "y"])
        keep_backlogged(pair.b, ["x"])
        pair.step()
    return pair.service()


def test_flooding_both_replicas_earns_no_more_than_a_fair_share():
    service = _two_replicas(share=True)
    assert service["x"] / service["y"] == pytest.approx(1.0, abs=0.10)


def test_without_sharing_the_flood_takes_three_shares():
    # The failure the shared counters prevent: each replica alone splits a 1:1, so x gets b + half of a.
    service = _two_replicas(share=False)
    assert service["x"] / service["y"] > 2.5


def test_fair_share_holds_with_closed_loop_clients():
    # Clients that wait a while before their next request: y's queue empties now and then while its
    # requests still run on a. That must not erase the deficit y has from b, which it cannot use.
    pair = TwoReplicas(share=True, max_num_seqs=8)
    # 16 clients per flood over 8 slots, 10 steps between a reply and the next request: y still asks
    # for more than replica a can give, but its queue runs dry now and then. (Lifting y's effective
    # counter at those moments, the rule for idle tenants, gave x 1.36 shares to y's 1.)
    clients = {(pair.a, "x"): 16, (pair.b, "x"): 16, (pair.a, "y"): 16}
    think_steps, resubmit, open_requests = 10, [], []
    for (sim, tenant), count in clients.items():
        resubmit += [(0, sim, tenant)] * count
    for step in range(3000):
        for due in [r for r in resubmit if r[0] <= step]:
            resubmit.remove(due)
            open_requests.append((due[1].submit(due[2], max_tokens=48), due[1], due[2]))
        pair.step()
        for request in [r for r in open_requests if r[0].status.name == "FINISHED"]:
            open_requests.remove(request)
            resubmit.append((step + think_steps, request[1], request[2]))
    service = pair.service()
    assert service["x"] / service["y"] == pytest.approx(1.0, abs=0.10)


def test_idle_time_elsewhere_is_not_banked():
    # x floods both replicas alone for a while; then y floods both too. y starts level with x (its
    # effective counter is lifted, peers' service included) instead of owning both replicas until it
    # has "caught up" with everything x received while y was away.
    pair = TwoReplicas(share=True)
    for _ in range(600):
        keep_backlogged(pair.a, ["x"])
        keep_backlogged(pair.b, ["x"])
        pair.step()
    before = pair.service()
    for _ in range(400):
        keep_backlogged(pair.a, ["x", "y"])
        keep_backlogged(pair.b, ["x", "y"])
        pair.step()
    after = pair.service()
    gained = {t: after[t] - before.get(t, 0) for t in ("x", "y")}
    assert gained["x"] / gained["y"] == pytest.approx(1.0, abs=0.10)


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the replica registry needs Redis (set in CI)")
def test_heartbeats_exchange_service_between_replicas_of_one_model():
    from inference.registry import ReplicaHeartbeat

    registry = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/13"  # its own DB: no clash with other suites
    model, seen = f"m-{uuid.uuid4().hex[:8]}", []

    def replica(name, service, *, of=model, ttl=5.0, on_peers=None):
        return ReplicaHeartbeat(redis_url=registry, replica_id=f"{name}-{model}", url=f"http://{name}", ttl=ttl,
                                describe=lambda: {"model": of, "service": service}, on_peers=on_peers)

    a = replica("a", {"x": 1.0}, on_peers=seen.append)
    b, other_model = replica("b", {"x": 7.0}), replica("c", {"x": 9.0}, of="other")
    short_lived = replica("d", {"y": 3.0}, ttl=0.2)
    for heartbeat in (b, other_model, short_lived):
        heartbeat.beat()
    a.beat()
    assert seen[-1] == {f"b-{model}": {"x": 7.0}, f"d-{model}": {"y": 3.0}}  # same model only, not itself
    time.sleep(0.3)  # d stops renewing and expires: it leaves the set too
    a.beat()
    assert seen[-1] == {f"b-{model}": {"x": 7.0}}
    assert f"d-{model}".encode() not in a.client.smembers("fw:replicas")
    b.stop()  # graceful: deregisters at once
    a.beat()
    assert seen[-1] == {}
    for heartbeat in (a, other_model):
        heartbeat.stop()


def test_only_recently_served_tenants_are_published_and_peers_still_count_right():
    clock = FakeClock()
    published, ledger = RecentlyServed(window_s=60, clock=clock), PeerServiceLedger()
    assert published.select({"x": 5.0, "y": 1.0}) == {"x": 5.0, "y": 1.0}
    clock.now += 61
    assert published.select({"x": 9.0, "y": 1.0}) == {"x": 9.0}  # y has not moved for a minute
    ledger.observe({"a": {"x": 5.0, "y": 1.0}})
    ledger.observe({"a": {"x": 9.0}})
    # y comes back: only its growth since the last figure seen counts, not its whole history again.
    assert ledger.observe({"a": published.select({"x": 9.0, "y": 4.0})}) == {"x": 9.0, "y": 4.0}

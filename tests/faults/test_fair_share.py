"""Fair share across replicas with real processes: two replicas of the tiny model sharing their
fair-share counters through the cluster's Redis registry (inference/fairshare.py).

Tenant x floods both replicas, tenant y (equal weight) floods only replica a. On their own
counters each replica would split 1:1 and x would get three shares to y's one (measured side by
side by bench/bench_fairness_replicas.py); with the shared counters replica a serves y while b
serves x.
"""

import uuid

import pytest

from tests.support.replica_flood import flood

from .conftest import MODEL

pytestmark = pytest.mark.faults


def live_replicas(cluster, count: int) -> list[str]:
    alive = [url for url, process in cluster.replicas if process.poll() is None]
    while len(alive) < count:
        alive.append(cluster.start_replica())
    return alive[:count]


def test_tenant_flooding_both_replicas_gets_no_more_than_its_share(cluster):
    a, b = live_replicas(cluster, 2)
    x, y = f"x-{uuid.uuid4().hex[:8]}", f"y-{uuid.uuid4().hex[:8]}"
    # 24 clients per flood > 8 batch slots per replica (the fixture's setting): queues stay full.
    result = flood(floods=[(a, x), (b, x), (a, y)], token=cluster.token, model=MODEL, clients=24,
                   warm_up_s=4.0, window_s=15.0)
    print(f"service in the window: replica a {result.gained[a]}, replica b {result.gained[b]}")
    assert not result.refused, f"replicas refused requests: {result.refused[:5]}"
    # The fair outcome is max-min: y gets replica a, x gets replica b, and their totals are equal when
    # the replicas are equally fast (the bench: x/y 1.06). Replicas sharing two cores with this test
    # are not always equally fast, so what is asserted is what does not depend on speed: x, already
    # served by b, takes at most 10 % of a while y wants all of it (each replica alone: 50 %).
    served_by_a = result.gained[a][x] + result.gained[a][y]
    assert served_by_a > 0 and result.gained[a][x] <= 0.10 * served_by_a, result.gained
    speed_ratio = sum(result.gained[b].values()) / served_by_a
    assert result.total(x) / result.total(y) == pytest.approx(speed_ratio, rel=0.10)

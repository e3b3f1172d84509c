"""Fair share across replicas: the service the *other* replicas gave each tenant.

Each replica publishes, in its registry heartbeat (inference/registry.py), the weighted service
it has given each tenant since it started (`policy.service`: w_in * prompt + w_out * generated
tokens, divided by the tenant's weight; cumulative, so it only grows). Once per heartbeat every
replica reads its peers' figures and adds the growth since its last read to a running total per
tenant; the engine's VTC policy adds that total to its own counter wherever it compares, lifts
or chooses (policy.py). A tenant served on replica B therefore ranks behind others on replica A
as if A had served it, and spreading requests over N replicas buys no more than one share.

Why accumulate growth rather than sum the peers' figures: a replica that dies or restarts (new id,
counting from zero) must not make what it gave disappear, or its tenants would be owed that
service again. Totals only grow. A replica unseen for `forget_after_s` is forgotten; if it ever
came back under the same id its whole history would count again (ids are per process, so only a
replica cut off from Redis for that long could).

Bound (equal-weight tenants f, g backlogged on every replica throughout an interval): VTC's
per-replica bound 2 * max(w_in * L_in, w_out * M) holds on each of the N replicas, and each
replica sees the others' service at most one heartbeat period late, so
|W_f - W_g| <= 2N * max(w_in * L_in, w_out * M) + (N - 1) * R * (T + read delay),
with R one replica's weighted service rate and T the heartbeat period: constant in time, so the
shares converge. A tenant backlogged on only some replicas gets those replicas first until its
total catches up with the others' (max-min fair: a replica no one else wants still serves the
flood, since VTC is work-conserving).

A replica publishes only the tenants whose figure moved in the last `RecentlyServed.window_s`
(10 minutes): the heartbeat stays as small as the set of active tenants, and leaving a tenant out
is safe, because peers add growth, not figures (its next figure is compared with the last one seen).

Pure Python, no Redis here (the heartbeat thread feeds it), so it is tested with plain dicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


class PeerServiceLedger:
    def __init__(self, *, forget_after_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.forget_after_s = forget_after_s
        self.clock = clock
        self._seen: dict[str, tuple[float, dict[str, float]]] = {}  # replica id -> (last seen, its figures)
        self._totals: dict[str, float] = {}

    def observe(self, peers: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Take the peers' current figures (replica id -> tenant -> service); return the totals
        per tenant as a new dict (the caller hands it to another thread)."""
        now = self.clock()
        for replica_id, service in peers.items():
            _, before = self._seen.get(replica_id, (now, {}))
            for tenant, value in service.items():
                if not isinstance(value, (int, float)):
                    continue  # a malformed entry from a peer counts as no growth
                grown = float(value) - before.get(tenant, 0.0)
                if grown > 0:
                    self._totals[tenant] = self._totals.get(tenant, 0.0) + grown
                    before[tenant] = float(value)
            self._seen[replica_id] = (now, before)
        for replica_id in [r for r, (seen, _) in self._seen.items() if now - seen > self.forget_after_s]:
            del self._seen[replica_id]
        return dict(self._totals)


class RecentlyServed:
    """Which of this replica's per-tenant figures to publish: those that moved within `window_s`."""

    def __init__(self, *, window_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.window_s, self.clock = window_s, clock
        self._last: dict[str, tuple[float, float]] = {}  # tenant -> (figure, when it last moved)

    def select(self, service: Mapping[str, float]) -> dict[str, float]:
        now = self.clock()
        for tenant, value in service.items():
            seen = self._last.get(tenant)
            if seen is None or seen[0] != value:
                self._last[tenant] = (value, now)
        return {t: value for t, (value, moved) in self._last.items() if now - moved <= self.window_s}

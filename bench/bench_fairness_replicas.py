"""Fair share across replicas, side by side: shared counters vs each replica on its own.

    .venv/bin/python bench/bench_fairness_replicas.py            # 2 replicas, 24 clients per flood, 20 s window
    .venv/bin/python bench/bench_fairness_replicas.py --window 40

Two replicas of the tiny random Llama (8 batch slots each) register in a private Redis. Tenant x
floods both replicas, tenant y (equal weight) floods only replica a. Prints each tenant's weighted
service per replica in the window and the ratio x/y: 1.0 is fair; each replica on its own counters
gives about 3 (x gets all of b and half of a).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from tests.support.cluster import FairwayCluster  # noqa: E402
from tests.support.replica_flood import flood  # noqa: E402
from tests.support.tiny_model import save_tiny_model  # noqa: E402


def measure(model_dir: Path, *, shared: bool, clients: int, window: float) -> tuple[float, dict]:
    env = {"FAIRWAY_MAX_NUM_SEQS": "8", "FAIRWAY_REPLICA_HEARTBEAT_SECONDS": "0.25",
           "FAIRWAY_FAIR_SHARE_ACROSS_REPLICAS": "1" if shared else "0"}
    cluster = FairwayCluster(model_dir=model_dir, replicas=2, gateways=0, extra_env=env)
    try:
        cluster.start()
        (a, _), (b, _) = cluster.replicas
        x, y = f"x-{uuid.uuid4().hex[:6]}", f"y-{uuid.uuid4().hex[:6]}"
        result = flood(floods=[(a, x), (b, x), (a, y)], token=cluster.token, model="tiny-llama", clients=clients,
                       warm_up_s=4.0, window_s=window)
    finally:
        cluster.stop()
    per_replica = {name: {"x": result.gained[url][x], "y": result.gained[url][y]} for name, url in (("a", a), ("b", b))}
    return result.total(x) / max(result.total(y), 1.0), per_replica


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=24, help="closed-loop clients per (replica, tenant) flood")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured, after a 4 s warm-up")
    args = parser.parse_args()
    model_dir = save_tiny_model(Path(os.environ.get("TMPDIR", "/tmp")) / "fairway-fairness-model", context=4096,
                                ascii_only=True)
    print(f"x floods replicas a and b, y floods a only; equal weights; {args.clients} clients per flood; "
          f"{args.window:.0f} s window; weighted service (w_in*prompt + w_out*output tokens)")
    for shared in (True, False):
        ratio, per_replica = measure(model_dir, shared=shared, clients=args.clients, window=args.window)
        label = "shared counters " if shared else "per replica only"
        print(f"{label}: a x={per_replica['a']['x']:.0f} y={per_replica['a']['y']:.0f} | "
              f"b x={per_replica['b']['x']:.0f} y={per_replica['b']['y']:.0f} | x/y = {ratio:.2f}")


if __name__ == "__main__":
    main()

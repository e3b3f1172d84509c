"""Prometheus exposition of the engine's state (`GET /metrics` on the inference service).

`engine.stats()` is the single source: numbers become gauges named `fairway_engine_<key>`, and
dicts keyed by tenant (e.g. queued per tenant, virtual counters) become labelled gauges.
Latency histograms are fed by the engine through `observe_*` hooks when it provides them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _StatsCollector:
    def __init__(self, model: str):
        self.model = model
        self.stats: dict = {}

    def collect(self):
        for key, value in sorted(self.stats.items()):
            name = "fairway_engine_" + "".join(ch if ch.isalnum() else "_" for ch in key)
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                family = GaugeMetricFamily(name, f"engine stat {key}", labels=["model"])
                family.add_metric([self.model], float(value))
                yield family
            elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
                family = GaugeMetricFamily(name, f"engine stat {key} per tenant", labels=["model", "tenant"])
                for tenant, number in sorted(value.items()):
                    family.add_metric([self.model, str(tenant)], float(number))
                yield family


class EngineMetrics:
    def __init__(self, model: str):
        self.registry = CollectorRegistry()
        self.collector = _StatsCollector(model)
        self.registry.register(self.collector)
        self.ttft = Histogram("fairway_time_to_first_token_seconds", "Time to first token", registry=self.registry,
                              buckets=LATENCY_BUCKETS)
        self.inter_token = Histogram("fairway_inter_token_latency_seconds", "Time between tokens of a stream",
                                     registry=self.registry, buckets=LATENCY_BUCKETS)

    def render(self, stats: dict) -> tuple[bytes, str]:
        self.collector.stats = stats
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

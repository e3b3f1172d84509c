"""Prometheus exposition of the engine's state (`GET /metrics` on the inference service).

`engine.stats()` is the single source of engine state (queue depth, running sequences, KV-cache
use, preemptions, per-tenant queued/running/virtual counters); time-to-first-token and inter-token
histograms are observed by the HTTP layer as it streams.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _metric_name(*parts: str) -> str:
    return "fairway_engine_" + "_".join("".join(ch if ch.isalnum() else "_" for ch in part) for part in parts)


class _StatsCollector:
    """Turns the latest `engine.stats()` into gauges: numbers as-is, `tenants` labelled by tenant,
    other nested dicts (e.g. kv_cache) flattened into `<key>_<field>`."""

    def __init__(self, model: str):
        self.model = model
        self.stats: dict = {}

    def collect(self):
        for key, value in sorted(self.stats.items()):
            if key == "tenants" and isinstance(value, dict):
                yield from self._per_tenant(value)
            elif isinstance(value, dict):
                for field, number in sorted(value.items()):
                    yield from self._gauge(_metric_name(key, field), number)
            else:
                yield from self._gauge(_metric_name(key), value)

    def _gauge(self, name: str, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        family = GaugeMetricFamily(name, "engine state", labels=["model"])
        family.add_metric([self.model], float(value))
        yield family

    def _per_tenant(self, tenants: dict):
        fields = sorted({field for values in tenants.values() for field, number in values.items()
                         if isinstance(number, (int, float)) and not isinstance(number, bool)})
        for field in fields:
            family = GaugeMetricFamily(_metric_name("tenant", field), f"per-tenant {field}",
                                       labels=["model", "tenant"])
            for tenant, values in sorted(tenants.items()):
                if field in values:
                    family.add_metric([self.model, str(tenant)], float(values[field]))
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

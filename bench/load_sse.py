"""Load: N concurrent SSE clients for D seconds against 2 gateways + 2 replicas (tiny random Llama).

    .venv/bin/python bench/load_sse.py                      # the issue's size: 200 clients, 300 s
    .venv/bin/python bench/load_sse.py --clients 50 --duration 30

Runs the whole deployment (tests/support/cluster.py: private PostgreSQL + Redis, replicas that
register in Redis, gateway processes) and prints requests/s, TTFT p50/p99, errors by kind, and the
RSS of every process at the start and the end (the target: flat, and 0 gateway 5xx).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import httpx  # noqa: E402
import psutil  # noqa: E402

from tests.support.cluster import FairwayCluster  # noqa: E402
from tests.support.tiny_model import save_tiny_model  # noqa: E402


def rss_mb(cluster: FairwayCluster) -> dict[str, float]:
    sizes = {}
    for kind, processes in (("gateway", cluster.gateways), ("replica", cluster.replicas)):
        for index, (_, process) in enumerate(processes):
            try:
                sizes[f"{kind}{index}"] = psutil.Process(process.pid).memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                sizes[f"{kind}{index}"] = float("nan")
    return sizes


def log_digest(cluster: FairwayCluster) -> Counter:
    """Warnings and errors the processes logged, by message (ids and numbers blanked)."""
    import re

    digest: Counter = Counter()
    for path in cluster.tmp.glob("*.log"):
        frames: list[str] = []  # the current traceback's last frame, to name where an exception came from
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("  File "):
                frames = [line.strip()]
                continue
            if frames and not line.startswith(" "):  # the exception line that ends a traceback
                line, frames = f"{line} at {frames[0]}", []
            if "WARNING" in line or "ERROR" in line or "Error" in line or "Exception" in line:
                digest[re.sub(r"[0-9a-f]{8,}|\d+", "#", line)[:220]] += 1
    return digest


async def client_loop(gateway: str, key: str, deadline: float, ttfts: list, outcomes: Counter, max_tokens: int):
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": max_tokens, "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < deadline:
            started, first = time.monotonic(), None
            try:
                async with client.stream("POST", gateway + "/v1/chat/completions", json=body,
                                         headers=headers) as response:
                    if response.status_code != 200:
                        refusal = (await response.aread()).decode(errors="replace")
                        code = refusal.split('"code": "')[-1].split('"')[0][:40]
                        outcomes[f"http_{response.status_code}_{code}"] += 1
                        await asyncio.sleep(0.2)
                        continue
                    async for line in response.aiter_lines():
                        if line.startswith("data: {\"error\""):
                            outcomes["stream_error"] += 1
                            break
                        if first is None and '"content":"' in line and '"content":""' not in line:
                            first = time.monotonic() - started
                        if line == "data: [DONE]":
                            outcomes["ok"] += 1
                            break
            except httpx.HTTPError as exc:
                outcomes[f"client_{type(exc).__name__}"] += 1
                continue
            if first is not None:
                ttfts.append(first)


async def run_load(cluster: FairwayCluster, key: str, clients: int, duration: float, max_tokens: int):
    deadline = time.monotonic() + duration
    ttfts: list[float] = []
    outcomes: Counter = Counter()
    gateways = [url for url, _ in cluster.gateways]
    rss_samples: list[tuple[float, dict]] = []

    async def sample_rss():  # every tenth of the run: a plateau after warm-up is not a leak
        started = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(duration / 10)
            rss_samples.append((time.monotonic() - started, rss_mb(cluster)))

    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(client_loop(gateways[i % len(gateways)], key, deadline, ttfts, outcomes, max_tokens)
                           for i in range(clients)))
    sampler.cancel()
    return ttfts, outcomes, rss_samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    model_dir = save_tiny_model(Path(os.environ.get("TMPDIR", "/tmp")) / "fairway-load-model")
    cluster = FairwayCluster(model_dir=model_dir, replicas=2, gateways=2,
                             extra_env={"FAIRWAY_MAX_QUEUE_PER_TENANT": "1000", "FAIRWAY_MAX_QUEUE_TOTAL": "2000"})
    try:
        cluster.start()
        cluster.manage("plan_create", "load", "--rpm=1000000", "--tpm=1000000000", "--max-concurrent-requests=1000",
                       "--monthly-token-budget=1000000000")
        cluster.manage("tenant_create", "load", "--plan", "load")
        key = cluster.manage("apikey_create", "--tenant", "load").strip().splitlines()[-1]
        rss_start = rss_mb(cluster)
        started = time.monotonic()
        ttfts, outcomes, rss_samples = asyncio.run(run_load(cluster, key, args.clients, args.duration, args.max_tokens))
        elapsed = time.monotonic() - started
        rss_end = rss_mb(cluster)
        problems = log_digest(cluster)
    finally:
        cluster.stop()

    done = outcomes["ok"]
    quantiles = statistics.quantiles(ttfts, n=100) if len(ttfts) >= 2 else [float("nan")] * 99
    gateway_5xx = sum(n for kind, n in outcomes.items() if kind.startswith("http_5")) + outcomes["stream_error"]
    print(f"clients={args.clients} duration={elapsed:.0f}s max_tokens={args.max_tokens}")
    print(f"completed={done} requests/s={done / elapsed:.1f} TTFT p50={quantiles[49] * 1000:.0f}ms "
          f"p99={quantiles[98] * 1000:.0f}ms")
    print(f"outcomes={dict(outcomes)} gateway_5xx_or_stream_errors={gateway_5xx}")
    for line, count in problems.most_common(8):
        print(f"logged {count}x: {line}")
    warm = rss_samples[0][1] if rss_samples else rss_start  # after the first tenth of the run
    for name in rss_start:
        series = " ".join(f"{sample[name]:.0f}" for _, sample in rss_samples)
        print(f"rss {name}: start {rss_start[name]:.0f} MB, warm {warm[name]:.0f}, end {rss_end[name]:.0f} MB "
              f"(end/warm {rss_end[name] / warm[name]:.2f}x; every tenth: {series})")


if __name__ == "__main__":
    main()

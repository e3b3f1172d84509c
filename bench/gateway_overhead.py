"""Gateway overhead against a FAKE inference service that answers at once.

Measures, in one run and with the same load generator:
  (a) straight to the FAKE upstream (tests/support/fake_inference.py, scripted tokens, no model), and
  (b) through the real gateway (uvicorn config.asgi:application, one worker): API-key auth, RPM via
      django-ratelimit + token/budget/concurrency reservation on Redis, usage records on PostgreSQL.
Prints requests/s at 16 concurrent, p50/p99 latency at 1 concurrent, and the ratios.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fairway_bench REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/gateway_overhead.py [--seconds 8] [--latency-requests 400] [--async-commit]

The database named in DATABASE_URL is created if missing and migrated; the bench tenant's Redis
keys are left to expire. Targets: gateway >= 20% of direct requests/s; p50 added latency <= 3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_app():
    """uvicorn --factory entry point: the FAKE upstream, answering at once (no token delay)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from tests.support.fake_inference import FakeInferenceService, FakeScript

    return FakeInferenceService(FakeScript(token=os.environ["FAIRWAY_INFERENCE_TOKEN"], prompt_tokens=None))


def _wait(url: str, process: subprocess.Popen, headers: dict | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, headers=headers or {}, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _setup_tenant() -> tuple[str, str]:
    """Migrate and issue a key on a plan whose limits the bench never reaches (so nothing is refused)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("FAIRWAY_LOG_LEVEL", "WARNING")  # the load generator must not log each request
    django.setup()
    from django.core.management import call_command

    from tenants import services

    call_command("migrate", verbosity=0)
    plan, _ = services.plan_get_or_create(name="bench", rpm=10_000_000, tpm=1_000_000_000,
                                          monthly_token_budget=10**15, max_concurrent_requests=1000,
                                          max_tokens_per_request=64, price_per_1k_input_tokens="0.01",
                                          price_per_1k_output_tokens="0.03")
    tenant = services.tenant_create(name="Bench", slug=f"bench-{secrets.token_hex(4)}", plan=plan)
    return services.apikey_create(tenant=tenant, name="bench").plaintext, tenant.slug


async def _throughput(url: str, headers: dict, seconds: float, concurrency: int) -> tuple[float, int]:
    done = errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker():
            nonlocal done, errors
            while time.monotonic() < deadline:
                response = await client.post(url, json=BODY, headers=headers)
                if response.status_code == 200:
                    done += 1
                else:
                    errors += 1
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.monotonic() - started), errors


async def _latency(url: str, headers: dict, count: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):  # warm the connection and the servers' caches
            await client.post(url, json=BODY, headers=headers)
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post(url, json=BODY, headers=headers)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _usage_records(tenant_slug: str) -> tuple[int, int]:
    from billing.models import UsageRecord

    records = UsageRecord.objects.filter(tenant__slug=tenant_slug)
    return records.filter(status="ok").count(), records.exclude(status="ok").count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-requests", type=int, default=400)
    parser.add_argument("--async-commit", action="store_true",
                        help="also measure a gateway with FAIRWAY_USAGE_SYNC_COMMIT=0 (no fsync per request)")
    parser.add_argument("--variant-settings", metavar="MODULE",
                        help="also measure a gateway run with DJANGO_SETTINGS_MODULE=MODULE (importable via PYTHONPATH)")
    parser.add_argument("--profile", help="run the gateway under cProfile and write stats here")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        print("note: DATABASE_URL/REDIS_URL not both set; measuring the embedded default instead", file=sys.stderr)

    if os.environ.get("DATABASE_URL") and not os.environ.get("FAIRWAY_KEKS"):
        import base64  # the bench stores no conversations: a throwaway key-encryption key will do

        os.environ["FAIRWAY_KEKS"] = "bench:" + base64.b64encode(os.urandom(32)).decode()
    token = secrets.token_urlsafe(16)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "FAIRWAY_INFERENCE_TOKEN": token, "FAIRWAY_LOG_LEVEL": "WARNING", "PYTHONPATH": path}
    os.environ.update(FAIRWAY_INFERENCE_TOKEN=token)
    if os.environ.get("DATABASE_URL"):
        _ensure_database(os.environ["DATABASE_URL"])
    key, slug = _setup_tenant()

    uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning", "--host", "127.0.0.1"]
    fake_port = _free_port()
    env["FAIRWAY_INFERENCE_URL"] = f"http://127.0.0.1:{fake_port}"
    processes = [subprocess.Popen([*uvicorn, "--port", str(fake_port), "--factory",
                                   "bench.gateway_overhead:fake_app"], cwd=ROOT, env=env)]
    targets = {"direct (FAKE upstream)": (f"http://127.0.0.1:{fake_port}/v1/chat/completions",
                                          {"Authorization": f"Bearer {token}"})}
    variants = [("gateway", {})] + ([("gateway, async commit", {"FAIRWAY_USAGE_SYNC_COMMIT": "0"})]
                                    if args.async_commit else [])
    if args.variant_settings:  # an experiment: the same gateway under another settings module
        variants.append((f"gateway, {args.variant_settings}", {"DJANGO_SETTINGS_MODULE": args.variant_settings}))
    for name, extra in variants:
        port = _free_port()
        command = [*uvicorn, "--port", str(port), "config.asgi:application"]
        if args.profile and not extra:
            command = [sys.executable, "-m", "cProfile", "-o", args.profile, *command[1:]]
        processes.append(subprocess.Popen(command, cwd=ROOT, env={**env, **extra}))
        targets[name] = (f"http://127.0.0.1:{port}/v1/chat/completions", {"Authorization": f"Bearer {key}"})
    try:
        _wait(f"http://127.0.0.1:{fake_port}/v1/models", processes[0], {"Authorization": f"Bearer {token}"})
        for process, (url, _) in zip(processes[1:], list(targets.values())[1:]):
            _wait(url.replace("/v1/chat/completions", "/health"), process)
        results = {}
        for name, (url, headers) in targets.items():
            latency = asyncio.run(_latency(url, headers, args.latency_requests))
            rps, errors = asyncio.run(_throughput(url, headers, args.seconds, args.concurrency))
            results[name] = (rps, errors, _pct(latency, 0.5), _pct(latency, 0.99), statistics.mean(latency))
            print(f"{name:24s} {rps:8.0f} req/s @{args.concurrency} (errors {errors})   "
                  f"p50 {results[name][2]:6.2f} ms  p99 {results[name][3]:6.2f} ms  mean {results[name][4]:6.2f} ms @1")
        direct = results.pop("direct (FAKE upstream)")
        for name, through in results.items():
            print(f"{name}: throughput {through[0] / direct[0]:.1%} of direct (target >= 20%); p50 added "
                  f"{through[2] - direct[2]:.2f} ms (target <= 3 ms); p99 added {through[3] - direct[3]:.2f} ms")
        ok, other = _usage_records(slug)
        print(f"usage records written for the bench tenant: {ok} ok, {other} other")
    finally:
        for process in reversed(processes):
            process.send_signal(subprocess.signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()

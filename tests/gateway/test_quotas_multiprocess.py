"""Two real gateway PROCESSES (uvicorn config.asgi:application) sharing the database (and Redis when
REDIS_URL is set), in front of the FAKE upstream running in this test process.

The quota backend is what the processes' settings choose: Redis with REDIS_URL, else the database.
The Redis-restart test starts its own redis-server (never touching the shared one).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection

from tests.support.billing_fixtures import *  # noqa: F403
from tests.support.fake_inference import FakeInferenceService, FakeScript
from tests.support.servers import free_port, serve_in_thread

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
TOKENS = 4


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):  # the embedded default's options: wait for the lock, write-first txns
        return f"sqlite:///{db['NAME']}?timeout=20&transaction_mode=IMMEDIATE"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def fake_service():
    service = FakeInferenceService(FakeScript(prompt_tokens=None, tokens=["tok"] * TOKENS))
    with serve_in_thread(service) as url:
        yield service, url


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


@contextmanager
def gateways(fake_url: str, token: str, logs: Path, redis_url: str | None, count: int = 2):
    env = {**os.environ, "DATABASE_URL": _database_url(), "FAIRWAY_INFERENCE_URL": fake_url,
           "FAIRWAY_INFERENCE_TOKEN": token, "FAIRWAY_KEY_PEPPER": settings.FAIRWAY_KEY_PEPPER,
           "FAIRWAY_SECRET_KEY": settings.SECRET_KEY, "FAIRWAY_KEKS": settings.FAIRWAY_KEKS,
           "FAIRWAY_LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    ports = [free_port() for _ in range(count)]
    processes = [subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port),
                                   "--no-access-log"], cwd=ROOT, env=env,
                                  stdout=open(logs / f"gateway-{port}.log", "w"), stderr=subprocess.STDOUT)
                 for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes):
            _wait_ready(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def pair(fake_service, django_db_setup, tmp_path_factory):
    service, url = fake_service
    with gateways(url, service.script.token, tmp_path_factory.mktemp("logs"), os.environ.get("REDIS_URL")) as urls:
        yield urls


def fire(urls: list[str], key: str, count: int, *, stream_every: int = 0) -> list[httpx.Response]:
    """`count` requests at once, alternating between the gateways; every n-th one streamed."""
    for url in urls:  # warm each process's key cache first: a cold burst would open a DB connection per request
        assert httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200

    async def run():
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            async def one(i: int):
                body = {"model": MODEL, "messages": HI, "max_tokens": TOKENS}
                if stream_every and i % stream_every == 0:
                    body.update(stream=True, stream_options={"include_usage": True})
                return await client.post(urls[i % len(urls)] + "/v1/chat/completions", json=body,
                                         headers={"Authorization": f"Bearer {key}"})
            return await asyncio.gather(*(one(i) for i in range(count)))
    return asyncio.run(run())


def delivered(response: httpx.Response) -> tuple[int, int]:
    """(prompt, completion) tokens the client was told it received."""
    if response.headers["content-type"].startswith("text/event-stream"):
        chunks = [json.loads(part[6:]) for part in response.text.split("\n\n") if part.startswith("data: {")]
        usage = chunks[-1]["usage"]
    else:
        usage = response.json()["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


def holds_left(tenant_id: str, redis_url: str | None) -> dict:
    """What the quota backend still holds for the tenant (all zero when every request settled)."""
    if not redis_url:
        from gateway.quotas.models import QuotaHold, QuotaState

        state = QuotaState.objects.get(pk=tenant_id)
        return {"active": state.active, "holds": QuotaHold.objects.filter(tenant_id=tenant_id).count(),
                "month_used": state.month_used}
    client = redis_lib.Redis.from_url(redis_url)
    epoch = client.info("server")["run_id"][:12]
    base = f"fw:q:{epoch}:{{{tenant_id}}}"
    month = next(iter(client.scan_iter(f"{base}:m:*")))
    return {"active": client.zcard(f"{base}:active"), "holds": client.hlen(f"{base}:holds"),
            "month_used": int(client.get(month))}


def records_of(tenant, expected: int):
    from billing.models import UsageRecord

    def done():
        rows = list(UsageRecord.objects.filter(tenant=tenant).exclude(status="pending"))
        return rows if len(rows) == expected else None

    return wait_for(done, timeout=15) or list(UsageRecord.objects.filter(tenant=tenant))


def test_budget_for_exactly_ten_admits_ten_of_200_across_two_processes(pair, make_key):
    reservation = prompt_tokens() + TOKENS
    issued = make_key(monthly_token_budget=10 * reservation, max_concurrent_requests=1000, rpm=100_000,
                      tpm=10**9)
    responses = fire(pair, issued.plaintext, 200, stream_every=3)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 10, 429: 190}, (statuses, {r.text[:200] for r in responses if r.status_code != 200})
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"insufficient_quota"}
    sent = [delivered(r) for r in responses if r.status_code == 200]
    tenant = issued.api_key.tenant
    rows = records_of(tenant, 200)
    assert Counter(row.status for row in rows) == {"ok": 10, "rejected": 190}
    billed = sum(row.prompt_tokens + row.completion_tokens for row in rows)
    assert billed == sum(p + c for p, c in sent) == 10 * reservation
    assert holds_left(str(tenant.pk), os.environ.get("REDIS_URL")) == {"active": 0, "holds": 0,
                                                                       "month_used": 10 * reservation}


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="RPM is shared across processes through Redis")
def test_requests_per_minute_is_the_plans_number_not_times_processes(pair, make_key):
    issued = make_key(rpm=10)
    # django-ratelimit windows are fixed (offset per key): don't start a burst in a window's last seconds
    offset = zlib.crc32(str(issued.api_key.tenant_id).encode()) % 60
    left = (offset - time.time()) % 60
    if left < 5:
        time.sleep(left + 0.1)
    statuses = Counter(r.status_code for r in fire(pair, issued.plaintext, 30))
    assert statuses == {200: 10, 429: 20}, statuses


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of our own (no persistence), restartable without touching the shared one."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()

    def start():
        subprocess.run([binary, "--port", str(port), "--daemonize", "yes", "--save", "", "--appendonly", "no",
                        "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")], check=True)
        client = redis_lib.Redis(port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                return client.ping()
            except redis_lib.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop():
        try:
            redis_lib.Redis(port=port).shutdown(nosave=True)
        except redis_lib.ConnectionError:
            pass  # shutdown closes the connection it came on

    start()
    yield f"redis://127.0.0.1:{port}/0", lambda: (stop(), start())
    stop()


def test_redis_restart_mid_run_rebuilds_from_the_database_without_overspend(fake_service, private_redis, make_key,
                                                                            tmp_path):
    service, fake_url = fake_service
    redis_url, restart = private_redis
    reservation = prompt_tokens() + TOKENS
    issued = make_key(monthly_token_budget=10 * reservation, max_concurrent_requests=100, rpm=100_000, tpm=10**9)
    with gateways(fake_url, service.script.token, tmp_path, redis_url, count=1) as urls:
        service.script.token_delay = 0.2  # two requests still streaming when Redis goes away
        before = len(service.requests)
        try:
            async def in_flight():
                async with httpx.AsyncClient(timeout=30) as client:
                    body = {"model": MODEL, "messages": HI, "max_tokens": TOKENS, "stream": True}
                    tasks = [asyncio.create_task(client.post(urls[0] + "/v1/chat/completions", json=body,
                                                             headers={"Authorization": f"Bearer {issued.plaintext}"}))
                             for _ in range(2)]
                    while len(service.requests) < before + 2:
                        await asyncio.sleep(0.01)
                    await asyncio.to_thread(restart)
                    return await asyncio.gather(*tasks)
            first = asyncio.run(in_flight())
        finally:
            service.script.token_delay = 0.0
        assert [r.status_code for r in first] == [200, 200]
        assert all(r.text.endswith("data: [DONE]\n\n") for r in first)
        responses = fire(urls, issued.plaintext, 20)
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 8 and set(statuses) <= {200, 429}, statuses
    rows = records_of(issued.api_key.tenant, 22)
    assert sum(row.prompt_tokens + row.completion_tokens for row in rows) == 10 * reservation
    assert holds_left(str(issued.api_key.tenant_id), redis_url) == {"active": 0, "holds": 0,
                                                                    "month_used": 10 * reservation}

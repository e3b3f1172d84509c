"""Replica routing: least outstanding work, failover before the first token, health, Redis registry."""

import asyncio
import os

import httpx
import pytest

from gateway import upstream
from gateway.replicas import Replica, ReplicaDirectory
from tests.support.fake_inference import MODEL, FakeInferenceService, FakeScript
from tests.support.servers import free_port, serve_in_thread

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def directory_with(*replicas: Replica, clock=None) -> ReplicaDirectory:
    directory = ReplicaDirectory(static_urls=[], token="t", clock=clock or Clock(), refresh_s=1e9)
    directory._refreshed_at = directory.clock()
    directory.replicas = {r.url: r for r in replicas}
    return directory


def test_choice_is_least_work_and_respects_model_health_and_exclusion():
    a = Replica("http://a", frozenset({"m"}), reported_load=500, healthy=True)
    b = Replica("http://b", frozenset({"m"}), reported_load=100, healthy=True, inflight=300)
    c = Replica("http://c", frozenset({"other"}), healthy=True)
    d = Replica("http://d", frozenset({"m"}), healthy=False)
    directory = directory_with(a, b, c, d)
    choose = lambda **kw: asyncio.run(directory.choose(None, "m", **kw))  # noqa: E731
    assert choose().url == "http://b"
    b.inflight = 450
    assert choose().url == "http://a"
    assert choose(exclude={"http://a", "http://b"}) is None
    assert asyncio.run(directory.choose(None, "nope")) is None


def test_failed_replica_is_out_then_back_when_healthy():
    clock = Clock()
    a = Replica("http://a", frozenset({"m"}), healthy=True)
    b = Replica("http://b", frozenset({"m"}), healthy=True, reported_load=10)
    directory = directory_with(a, b, clock=clock)
    directory.mark_failed("http://a")
    assert asyncio.run(directory.choose(None, "m")).url == "http://b"
    clock.now += directory.down_s
    directory._apply(a, {"status": "ok", "model": "m", "load": {"outstanding_tokens": 0}})
    assert asyncio.run(directory.choose(None, "m")).url == "http://a"
    directory._apply(a, {"status": "draining", "model": "m"})
    assert asyncio.run(directory.choose(None, "m")).url == "http://b"


@pytest.fixture
def two_replicas(settings):
    a, b = FakeInferenceService(FakeScript()), FakeInferenceService(FakeScript())
    with serve_in_thread(a) as url_a, serve_in_thread(b) as url_b:
        settings.FAIRWAY_INFERENCE_URLS = [url_a, url_b]
        settings.FAIRWAY_INFERENCE_TOKEN = a.script.token
        settings.FAIRWAY_REPLICA_REFRESH_SECONDS = 0.0
        upstream.reset()
        yield a, b
    upstream.reset()


def chat(gateway_url, key, **body):
    return httpx.post(gateway_url + "/v1/chat/completions", json={**BODY, **body}, timeout=10,
                      headers={"Authorization": f"Bearer {key}"})


@pytest.mark.django_db(transaction=True)
def test_routes_to_the_least_loaded_replica(gateway_url, two_replicas, tenant_key):
    a, b = two_replicas
    # Warm up first: the gateway's first request also fetches the tokenizer (a second of CPU in
    # this process), long enough for a health probe of the in-thread fakes to time out.
    assert chat(gateway_url, tenant_key.plaintext).status_code == 200
    a.requests.clear()
    b.requests.clear()
    a.script.outstanding_tokens = 5000
    for _ in range(3):
        assert chat(gateway_url, tenant_key.plaintext).status_code == 200
    assert (len(a.requests), len(b.requests)) == (0, 3)
    a.script.outstanding_tokens, b.script.outstanding_tokens = 0, 5000
    # The hot path routes on the previous refresh's view: within a few requests the new loads apply.
    for _ in range(5):
        assert chat(gateway_url, tenant_key.plaintext).status_code == 200
    assert len(a.requests) >= 3


@pytest.mark.django_db(transaction=True)
def test_overloaded_replica_fails_over_before_the_first_token(gateway_url, two_replicas, tenant_key):
    a, b = two_replicas
    b.script.outstanding_tokens = 5000  # a is preferred…
    a.script.reject = (503, {"error": {"message": "full", "type": "server_error", "param": None,
                                       "code": "overloaded"}})  # …but refuses
    for stream in (False, True):
        response = chat(gateway_url, tenant_key.plaintext, stream=stream)
        assert response.status_code == 200 and "Hello" in response.text
    assert len(a.requests) == 2 and len(b.requests) == 2


@pytest.mark.django_db(transaction=True)
def test_down_and_unreachable_replicas_are_skipped(gateway_url, settings, two_replicas, tenant_key):
    a, b = two_replicas
    a.script.health_status = "down"
    assert chat(gateway_url, tenant_key.plaintext).status_code == 200
    settings.FAIRWAY_INFERENCE_URLS = [f"http://127.0.0.1:{free_port()}", settings.FAIRWAY_INFERENCE_URLS[1]]
    upstream.reset()
    for _ in range(2):
        assert chat(gateway_url, tenant_key.plaintext).status_code == 200
    assert len(a.requests) == 0 and len(b.requests) == 3
    b.script.health_status = "down"
    response = chat(gateway_url, tenant_key.plaintext)
    assert response.status_code == 503 and response.headers["Retry-After"]


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the replica registry needs Redis (set in CI)")
def test_redis_registry_discovery_and_deregistration():
    from inference.registry import REPLICAS_SET, ReplicaHeartbeat

    registry = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/14"  # its own DB: no clash with other suites
    service = FakeInferenceService(FakeScript())
    with serve_in_thread(service) as url:
        beat = ReplicaHeartbeat(redis_url=registry, replica_id="r-test", url=url, interval=0.1, ttl=1,
                                describe=lambda: {"model": MODEL, "load": {"outstanding_tokens": 7}})
        beat.start()
        try:
            directory = ReplicaDirectory(static_urls=[], registry_url=registry, token="t", refresh_s=0)

            async def discover():
                async with httpx.AsyncClient() as client:
                    await directory.refresh(client, wait=True)
                    return await directory.choose(client, MODEL)

            replica = asyncio.run(discover())
            assert replica.url == url and replica.reported_load == 7
        finally:
            beat.stop()
        assert asyncio.run(discover()) is None
        assert b"r-test" not in beat.client.smembers(REPLICAS_SET)

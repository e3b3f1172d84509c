"""The live view: /health snapshots (whitelisted, DOWN handled), the staff-only socket pushing them
every interval, and one poller per fleet (cache lease). Uses the FAKE inference service with live stats."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dashboard import live
from tests.support.fake_live_inference import FakeLiveInference
from tests.support.isolation import fake_upstream_serving
from tests.support.servers import free_port, serve_in_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("executor_db_released")]


@pytest.fixture
def fake_service(settings):
    settings.FAIRWAY_DASHBOARD_LIVE_INTERVAL = 0.2
    with fake_upstream_serving(settings, service=FakeLiveInference()) as service:
        yield service


@pytest.fixture
def gateway(fake_service):
    from config.asgi import application

    with serve_in_thread(application) as url:
        yield url


def _ws(gateway: str, *, cookie: str | None = None, origin: str | None = None, headers: dict | None = None):
    extra = dict(headers or {})
    if cookie:
        extra["Cookie"] = f"sessionid={cookie}"
    return connect(gateway.replace("http://", "ws://") + live.LIVE_SOCKET_PATH, additional_headers=extra,
                   origin=origin or gateway, open_timeout=5)


def _session(client, user) -> str:
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_snapshot_names_tenants_and_keeps_only_known_fields(fake_service, acme):
    tid = str(acme.pk)
    fake_service.weights[tid] = 2.0
    fake_service.running[tid] = 1
    fake_service.queued["not-a-uuid"] = 3
    fake_service.weights["not-a-uuid"] = 1.0
    snap = asyncio.run(live.live_snapshot())
    assert snap["up"] and snap["model"] == "fake-model" and snap["running"] == 1 and snap["queued"] == 3
    assert snap["kv"]["percent"] == round(100 * 96 / 1024, 1)
    rows = {row["slug"]: row for row in snap["tenants"]}
    assert rows["acme"]["name"] == "Acme Corp" and rows["acme"]["weight"] == 2.0
    assert rows["not-a-uu"]["queued"] == 3  # unknown ids are shown shortened, not looked up
    assert set(snap) == {"up", "at", "alive", "model", "device", "policy", "running", "queued", "preemptions",
                         "generated_tokens", "steps", "max_num_seqs", "tokens_per_s", "kv", "tenants", "replicas"}


def test_snapshot_reports_down_without_raising(settings):
    settings.FAIRWAY_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    settings.FAIRWAY_INFERENCE_URLS = []
    snap = asyncio.run(live.live_snapshot())
    assert snap["up"] is False and snap["error"] == "unreachable"


def test_snapshot_with_a_wrong_service_token_is_down(fake_service, settings):
    settings.FAIRWAY_INFERENCE_TOKEN = "wrong"
    snap = asyncio.run(live.live_snapshot())
    assert snap == {**snap, "up": False, "error": "HTTP 401"}


def test_several_replicas_are_summed_and_listed(fake_service, settings):
    settings.FAIRWAY_INFERENCE_URLS = [settings.FAIRWAY_INFERENCE_URL, f"http://127.0.0.1:{free_port()}"]
    snap = asyncio.run(live.live_snapshot())
    assert snap["up"] and [r["up"] for r in snap["replicas"]] == [True, False]


def test_socket_pushes_a_snapshot_at_once_then_every_interval(gateway, fake_service, client, operator):
    with _ws(gateway, cookie=_session(client, operator)) as socket:
        first = json.loads(socket.recv(timeout=5))
        assert first["up"] and first["model"] == "fake-model"
        steps = [json.loads(socket.recv(timeout=5))["steps"] for _ in range(3)]
    assert steps == sorted(steps) and len(set(steps)) == 3  # the stats move between pushes


def test_socket_shows_down_and_recovers(gateway, fake_service, client, operator, settings):
    with _ws(gateway, cookie=_session(client, operator)) as socket:
        assert json.loads(socket.recv(timeout=5))["up"]
        up_url = settings.FAIRWAY_INFERENCE_URL
        settings.FAIRWAY_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
        assert _until(socket, lambda s: not s["up"])["error"] == "unreachable"
        settings.FAIRWAY_INFERENCE_URL = up_url
        assert _until(socket, lambda s: s["up"])


def _until(socket, predicate, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = json.loads(socket.recv(timeout=timeout))
        if predicate(snapshot):
            return snapshot
    raise AssertionError("no matching snapshot")


def test_socket_refuses_non_staff_anonymous_api_keys_and_foreign_origins(gateway, client, operator,
                                                                            django_user_model, acme_key):
    customer = django_user_model.objects.create_user("customer", password="x")
    from django.test import Client

    attempts = [dict(cookie=_session(Client(), customer)), dict(),
                dict(headers={"Authorization": f"Bearer {acme_key.plaintext}"}),
                dict(cookie=_session(client, operator), origin="https://evil.example")]
    for attempt in attempts:
        with pytest.raises(InvalidStatus) as refused:
            with _ws(gateway, **attempt):
                pass
        assert refused.value.response.status_code == 403


def test_one_poller_per_fleet_holds_the_lease():
    async def scenario():
        first, second = live.LivePoller(), live.LivePoller()
        assert await first._hold_lease(3) and not await second._hold_lease(3)
        assert await first._hold_lease(3)  # renewal
        first.watch()
        await first.unwatch()  # the last watcher leaving releases the lease at once
        assert await second._hold_lease(3)

    asyncio.run(scenario())


def test_socket_closes_once_the_session_no_longer_allows_it(gateway, client, operator, monkeypatch):
    from websockets.exceptions import ConnectionClosed

    from dashboard import consumers

    monkeypatch.setattr(consumers, "SESSION_RECHECK_S", 0.0)
    with _ws(gateway, cookie=_session(client, operator)) as socket:
        assert json.loads(socket.recv(timeout=5))["up"]
        json.loads(socket.recv(timeout=5))  # still fine while the session is valid
        client.logout()  # deletes the session row
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                socket.recv(timeout=5)
    assert closed.value.rcvd.code == 4403

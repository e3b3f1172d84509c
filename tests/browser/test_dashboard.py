"""The dashboard in headless Chromium: log in, charts drawn from seeded usage, a key issued and
shown once, revoked, a tenant suspended, and the live page following a FAKE inference service
while requests run through the real gateway. Screenshots land in artifacts/screenshots/."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from tests.dashboard.conftest import PASSWORD, hours_ago, seed_usage
from tests.support.fake_live_inference import FakeLiveInference
from tests.support.isolation import fake_upstream_serving
from tests.support.servers import free_port, serve_in_thread

from .conftest import PHONE, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("executor_db_released")]


@pytest.fixture
def fake_service(settings):
    """The FAKE inference service with live /health stats (tokens stream at 20/s, 2 run at once)."""
    settings.FAIRWAY_DASHBOARD_LIVE_INTERVAL = 0.5
    with fake_upstream_serving(settings, service=FakeLiveInference()) as service:
        yield service


@pytest.fixture
def gateway(fake_service, operator):
    from config.asgi import application

    with serve_in_thread(application) as url:
        yield url


def login(page, gateway: str, next_path: str = "/dashboard/"):
    page.goto(f"{gateway}{next_path}")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{gateway}{next_path}")


def test_login_and_overview_charts(page, gateway, acme, globex, acme_key):
    from tenants import services

    initech = services.tenant_create(name="Initech", slug="initech", plan=acme.plan)
    for hour in range(0, 24, 2):
        seed_usage(acme, at=hours_ago(hour + 0.2), count=3 + hour % 5, api_key=acme_key.api_key, cost="0.04")
        seed_usage(globex, at=hours_ago(hour + 0.5), count=2, completion=300, cost="0.09")
    for day in range(1, 30, 3):
        seed_usage(initech, at=hours_ago(24 * day), count=5, cost="0.2")
    seed_usage(globex, at=hours_ago(1), status="rejected", reason="tpm", prompt=0, completion=0, cost="0")
    seed_usage(acme, at=hours_ago(3), status="error", reason="upstream_error", cost="0")
    login(page, gateway)
    page.wait_for_selector("canvas[data-drawn='1']")
    drawn = page.evaluate("""() => [...document.querySelectorAll('canvas[data-series]')].map(c => {
        const chart = Chart.getChart(c);
        return chart.data.datasets.reduce((n, d) => n + d.data.reduce((a, b) => a + b, 0), 0);
    })""")
    assert len(drawn) == 6 and all(total > 0 for total in drawn)
    assert page.inner_text("#top-tenants").count("acme") == 1
    assert "initech" in page.inner_text("#month-spend")
    assert page.js_errors == []
    screenshot(page, "overview")
    screenshot(page, "overview-phone", viewport=PHONE)
    page.click("#top-tenants >> text=acme")
    page.wait_for_selector("canvas[data-drawn='1']")
    assert acme_key.api_key.display in page.inner_text("#keys")
    screenshot(page, "tenant-detail")


def test_issue_a_key_see_it_once_then_revoke_it(page, gateway, acme):
    login(page, gateway, "/admin/tenants/apikey/")
    page.click("#issue-key")
    page.select_option("#id_tenant", label="acme")
    page.fill("#id_name", "browser")
    page.click("#issue-submit")
    plaintext = page.inner_text("code.fw-new-key").strip()
    assert re.fullmatch(r"fw_[A-Za-z0-9]+_[A-Za-z0-9]+", plaintext)
    page.add_style_tag(content=".fw-new-key{filter:blur(5px)}")  # the artifact need not hold even a test key
    screenshot(page, "key-issued-once")
    page.reload()  # re-posts the form: its one-time nonce is spent, so nothing is issued or shown
    assert plaintext not in page.content() and "already submitted" in page.inner_text(".messagelist")
    assert plaintext not in page.content()
    page.click("#result_list a:has-text('fw_')")
    assert plaintext not in page.content()
    page.click("#key-revoke")
    page.wait_for_selector(".messagelist >> text=Revoked")
    page.goto(f"{gateway}/admin/tenants/apikey/")
    assert "revoked" in page.inner_text("#result_list")
    screenshot(page, "keys-after-revoke")


def test_suspend_a_tenant(page, gateway, acme, acme_key):
    login(page, gateway, f"/admin/tenants/tenant/{acme.pk}/change/")
    page.click("#tenant-suspend")
    page.wait_for_selector("#tenant-reactivate")
    assert "is now suspended" in page.inner_text(".messagelist")
    response = httpx.get(f"{gateway}/v1/models", headers={"Authorization": f"Bearer {acme_key.plaintext}"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "tenant_suspended"
    page.goto(f"{gateway}/dashboard/tenants/acme/")
    assert page.inner_text("#tenant-status") == "suspended"
    page.goto(f"{gateway}/admin/audit/auditevent/")
    assert "tenant.suspend" in page.inner_text("#result_list")
    screenshot(page, "audit-log")


def _chat(gateway: str, key: str, results: list) -> None:
    response = httpx.post(f"{gateway}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                          json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
    results.append(response.status_code)


def test_live_page_follows_requests_as_they_run(page, gateway, fake_service, acme, globex, acme_key):
    from tenants import services

    globex_key = services.apikey_create(tenant=globex, name="load")
    login(page, gateway, "/dashboard/live/")
    page.wait_for_selector("#live-state[data-state='up']")
    results: list[int] = []
    threads = [threading.Thread(target=_chat, args=(gateway, key, results))
               for key in (acme_key.plaintext, acme_key.plaintext, globex_key.plaintext, globex_key.plaintext)]
    for thread in threads:
        thread.start()
    page.wait_for_function("""() => {
        const rows = [...document.querySelectorAll('#live-tenants tbody tr[data-tenant]')].map(r => r.dataset.tenant);
        return rows.includes('acme') && rows.includes('globex')
            && Number(document.getElementById('live-running').textContent) >= 1
            && parseFloat(document.getElementById('live-tps').textContent) > 0;
    }""", timeout=10_000)
    updates = int(page.get_attribute("#live", "data-updates"))
    page.wait_for_function(f"() => Number(document.getElementById('live').dataset.updates) >= {updates + 2}")
    assert page.inner_text("#live-queued") != "–"
    screenshot(page, "live")
    screenshot(page, "live-phone", viewport=PHONE)
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200, 200, 200, 200]
    assert page.js_errors == []


def test_live_page_shows_the_service_down_and_keeps_the_page(page, gateway, settings):
    login(page, gateway, "/dashboard/live/")
    page.wait_for_selector("#live-state[data-state='up']")
    settings.FAIRWAY_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    page.wait_for_selector("#live-state[data-state='down']")
    assert "DOWN" in page.inner_text("#live-banner") and page.is_visible("#live-tenants")
    assert page.is_visible("nav") and page.inner_text("#live-running") != ""
    time.sleep(0.2)
    screenshot(page, "live-down")

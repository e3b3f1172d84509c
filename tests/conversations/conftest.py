"""Fixtures: a fresh KEK ring and key cache per test, two tenants with keys, API clients, a FAKE upstream."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.isolation import cache_isolate, fake_upstream_serving
from rest_framework.test import APIClient

from conversations import crypto, keystore
from tests.support.fake_inference import FakeScript
from tests.support.servers import serve_in_thread

MARKER = "PLAINTEXT-MARKER-9f2c41"  # planted in every piece of content; must never appear at rest


@pytest.fixture(autouse=True)
def _isolation(settings):
    """A fresh cache namespace (never flush a shared Redis), a fresh KEK and an empty DEK cache."""
    cache_isolate(settings)
    settings.FAIRWAY_KEKS = crypto.kek_generate_line("t1")
    keystore.cache_evict()
    yield
    keystore.cache_evict()


@dataclass
class Party:
    tenant: object
    key: str  # API key plaintext

    @property
    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        return client


def _party(slug: str, plan, scopes=None) -> Party:
    from tenants import services

    tenant = services.tenant_create(name=slug.title(), slug=slug, plan=plan)
    return Party(tenant=tenant, key=services.apikey_create(tenant=tenant, name="t", scopes=scopes).plaintext)


@pytest.fixture
def plan(db):  # tests that need other threads or processes to see rows also ask for transactional_db
    from tenants import services

    return services.plan_create(name="conv", max_tokens_per_request=256, rpm=10_000, tpm=10_000_000)


@pytest.fixture
def alice(plan) -> Party:
    return _party("alice", plan)


@pytest.fixture
def bob(plan) -> Party:
    return _party("bob", plan)


@pytest.fixture
def fake_upstream(settings):
    """The FAKE inference service (scripted tokens, tiny tokenizer, context 512) on a real socket."""
    with fake_upstream_serving(settings, FakeScript(tokens=["Hello", " ", MARKER, "!"])) as service:
        yield service


@pytest.fixture
def gateway_url(transactional_db):
    from config.asgi import application

    with serve_in_thread(application) as url:
        yield url
    # Per-request threads are gone; drop their persistent DB connections (CONN_MAX_AGE) with them, so
    # the test database can be flushed and dropped without waiting on idle sessions.
    import gc

    gc.collect()

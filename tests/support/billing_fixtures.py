"""Fixtures for the quotas and billing tests (import them into a test module with `from … import *`).

Time is injected: `clock` drives the quota periods and django-ratelimit's windows, so no test sleeps
to cross a minute or a month.
"""

from __future__ import annotations

import itertools
import time as _time
import types
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.support.fake_inference import MODEL, FakeScript, count_prompt
from tests.support.isolation import fake_upstream_serving
from tests.support.servers import release_db_thread, serve_in_thread

__all__ = ["Clock", "clock", "fake_llm", "gateway", "make_key", "post", "prompt_tokens", "wait_for", "MODEL",
           "db_thread_released", "HI"]

HI = [{"role": "user", "content": "hi"}]
_names = itertools.count()


class Clock:
    """Wall time for the quota code and django-ratelimit; starts mid-month, mid-minute."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 15, 12, 0, 5, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def time(self) -> float:  # django_ratelimit.core calls time.time()
        return self.now.timestamp()

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return when


@pytest.fixture
def clock(monkeypatch) -> Clock:
    import django_ratelimit.core

    from gateway.quotas import periods

    fake = Clock()
    monkeypatch.setattr(periods, "now", fake)
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=fake.time))
    return fake


@pytest.fixture
def db_thread_released():
    """Close the gateway's database thread after a test that used it without a server."""
    yield
    release_db_thread()


@pytest.fixture
def fake_llm(settings):
    """The FAKE inference service, counting prompts with the tiny tokenizer it also serves."""
    with fake_upstream_serving(settings, FakeScript(prompt_tokens=None)) as service:
        yield service


@pytest.fixture
def gateway(transactional_db, fake_llm):
    from config.asgi import application

    with serve_in_thread(application) as url:
        yield url


@pytest.fixture
def make_key(transactional_db):
    """make_key(rpm=…, tpm=…, …) → IssuedKey on a fresh plan and tenant."""
    from tenants import services

    def make(*, scopes=None, tenant=None, **limits):
        if tenant is None:
            number = next(_names)
            defaults = dict(rpm=1000, tpm=1_000_000, monthly_token_budget=10_000_000, max_concurrent_requests=50,
                            max_tokens_per_request=256, price_per_1k_input_tokens="0.50",
                            price_per_1k_output_tokens="1.50")
            plan = services.plan_create(name=f"plan-{number}", **{**defaults, **limits})
            tenant = services.tenant_create(name=f"Tenant {number}", slug=f"tenant-{number}", plan=plan)
        return services.apikey_create(tenant=tenant, name="test", scopes=scopes)

    return make


def prompt_tokens(messages=HI) -> int:
    """What the gateway (and the fake) count for `messages` with the tiny tokenizer."""
    return count_prompt({"messages": messages}, 512)


def post(url: str, key: str, body: dict | None = None, path: str = "/v1/chat/completions", **kwargs):
    body = body if body is not None else {"model": MODEL, "messages": HI, "max_tokens": 4}
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.post(url + path, json=body, headers=headers, timeout=10, **kwargs)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll until `predicate()` is truthy (background writes land a few ms after the response)."""
    deadline = _time.monotonic() + timeout
    while True:
        value = predicate()
        if value or _time.monotonic() > deadline:
            return value
        _time.sleep(interval)

"""Fixtures for the tenants tests: an isolated cache per test, a fake clock, a plan/tenant/key."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.isolation import cache_isolate

from tenants import authentication, services


@pytest.fixture(autouse=True)
def _isolated_cache(settings):
    """A fresh cache namespace per test, without flushing a Redis that other suites may share."""
    cache_isolate(settings)


class Clock:
    def __init__(self) -> None:
        # Mid-window start, so a test's failures never straddle a failure-window boundary by accident.
        self.now = datetime(2030, 1, 1, 12, 0, 10, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(authentication, "_now", clock)
    monkeypatch.setattr(services, "_now", clock)
    return clock


@pytest.fixture
def plan(db):
    return services.plan_create(name="basic", rpm=10, tpm=1000, monthly_token_budget=50_000,
                                max_concurrent_requests=2, max_tokens_per_request=256, weight="2.5",
                                price_per_1k_input_tokens="0.10", price_per_1k_output_tokens="0.30")


@pytest.fixture
def tenant(plan):
    return services.tenant_create(name="Acme", slug="acme", plan=plan)


@pytest.fixture
def issued(tenant, clock):
    return services.apikey_create(tenant=tenant, name="ci")

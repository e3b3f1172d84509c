"""Fixtures for the dashboard tests: an isolated cache, tenants with keys, operators, seeded usage."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.support.isolation import cache_isolate

from tenants import services

PASSWORD = "correct horse battery staple"
_ids = itertools.count()


@pytest.fixture(autouse=True)
def _isolated_cache(settings):
    """A fresh cache namespace per test, without flushing a Redis that other suites may share."""
    cache_isolate(settings)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only: PBKDF2 is slow
    from conversations import keystore

    keystore.cache_evict()  # unwrapped DEKs are cached per process by row id, which tests reuse
    yield
    keystore.cache_evict()


@pytest.fixture
def plan(db):
    return services.plan_create(name="pro", rpm=600, tpm=200_000, weight="2", price_per_1k_input_tokens="0.50",
                                price_per_1k_output_tokens="1.50")


@pytest.fixture
def acme(plan):
    return services.tenant_create(name="Acme Corp", slug="acme", plan=plan)


@pytest.fixture
def globex(plan):
    return services.tenant_create(name="Globex", slug="globex", plan=plan)


@pytest.fixture
def acme_key(acme):
    return services.apikey_create(tenant=acme, name="prod")


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.com", PASSWORD)


@pytest.fixture
def op_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def nonstaff_client(client, django_user_model):
    user = django_user_model.objects.create_user("customer", "c@example.com", PASSWORD)
    client.force_login(user)
    return client


def release_executor_db_connections() -> None:
    """Close the database connection of asgiref's shared sync thread. Async ORM calls made outside an
    HTTP request (socket consumers) run there and keep their connection, which would stop pytest from
    dropping a PostgreSQL test database."""
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def executor_db_released():
    yield
    release_executor_db_connections()


def seed_usage(tenant, *, at: datetime, count: int = 1, status: str = "ok", api_key=None, prompt: int = 100,
               completion: int = 50, cost: str = "0.010", reason: str = "", model: str = "fake-model") -> list:
    """Finalised usage records as the gateway writes them (bulk: one query)."""
    from billing.models import UsageRecord

    records = [UsageRecord(request_id=f"req_seed{next(_ids):08d}", tenant=tenant, api_key=api_key, model=model,
                           endpoint="chat.completions", status=status, reason=reason, prompt_tokens=prompt,
                           completion_tokens=completion, cost=Decimal(cost), created_at=at, finalised_at=at,
                           duration_s=0.5)
               for _ in range(count)]
    return UsageRecord.objects.bulk_create(records)


def hours_ago(hours: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(hours=hours)

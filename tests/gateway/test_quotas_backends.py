"""Both quota backends against the same contract: atomic reserve, settle, lease lapse, renew, periods.

The database backend runs everywhere (SQLite by default, PostgreSQL in CI); the Redis backend when
REDIS_URL is set. Time is passed in, never slept.
"""

import asyncio
import os
from datetime import datetime, timedelta, timezone

import pytest

from gateway.quotas import periods
from gateway.quotas.types import Admitted, Hold, Limits, QuotaUnavailable, RateLimited
from tests.support.billing_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)
NOW = datetime(2030, 1, 15, 12, 0, 5, tzinfo=timezone.utc)
LEASE = 60.0


@pytest.fixture(params=["database", "redis"])
def backend(request, settings, db_thread_released):
    from gateway.quotas.backends.database import DatabaseQuotaBackend
    from gateway.quotas.backends.redis import RedisQuotaBackend

    if request.param == "redis":
        if not os.environ.get("REDIS_URL"):
            pytest.skip("REDIS_URL not set (the Redis backend runs in the PostgreSQL + Redis suite)")
        return RedisQuotaBackend(os.environ["REDIS_URL"])
    return DatabaseQuotaBackend()


@pytest.fixture
def tenant_id(make_key):
    return str(make_key().api_key.tenant_id)


def hold(tenant_id, request_id, tokens, at=NOW):
    return Hold(request_id=request_id, tenant_id=tenant_id, tokens=tokens, month=periods.month_id(at),
                minute=periods.minute_id(at))


def limits(tpm=1000, budget=10_000, concurrent=10):
    return Limits(tpm=tpm, monthly_token_budget=budget, max_concurrent_requests=concurrent)


async def reserve(backend, tenant_id, request_id, tokens, lim, at=NOW):
    return await backend.reserve(hold=hold(tenant_id, request_id, tokens, at), limits=lim, now=at, lease_s=LEASE)


async def test_reserve_until_each_limit(backend, tenant_id):
    first = await reserve(backend, tenant_id, "r1", 600, limits())
    assert isinstance(first, Admitted) and first.window.used == 600 and first.window.remaining == 400
    tpm = await reserve(backend, tenant_id, "r2", 500, limits())
    assert isinstance(tpm, RateLimited) and tpm.reason == "tpm" and tpm.limit == 1000 and tpm.requested == 500
    assert 0 < tpm.retry_after <= 60
    budget = await reserve(backend, tenant_id, "r3", 100, limits(budget=650))
    assert budget.reason == "budget" and budget.retry_after == (periods.next_month_start(203001) - NOW).total_seconds()
    concurrency = await reserve(backend, tenant_id, "r4", 1, limits(concurrent=1))
    assert concurrency.reason == "concurrency" and concurrency.limit == 1


async def test_settle_keeps_what_was_spent_and_frees_the_rest(backend, tenant_id):
    lim = limits(tpm=1000, budget=1000, concurrent=1)
    await reserve(backend, tenant_id, "a", 1000, lim)
    await backend.settle(hold=hold(tenant_id, "a", 1000), spent=300, now=NOW)
    assert (await backend.window(tenant_id=tenant_id, limits=lim, now=NOW)).used == 300
    assert isinstance(await reserve(backend, tenant_id, "b", 700, lim), Admitted)  # slot and tokens back
    assert (await reserve(backend, tenant_id, "c", 1, limits(concurrent=5, budget=1000))).reason == "budget"


async def test_exactly_the_budget_is_admitted_under_concurrency(backend, tenant_id):
    lim = limits(tpm=10**9, budget=10 * 25, concurrent=1000)
    results = await asyncio.gather(*(reserve(backend, tenant_id, f"p{i}", 25, lim) for i in range(60)))
    assert sum(isinstance(r, Admitted) for r in results) == 10
    assert {r.reason for r in results if isinstance(r, RateLimited)} == {"budget"}


async def test_a_lapsed_lease_frees_slot_and_unspent_tokens(backend, tenant_id):
    lim = limits(tpm=10**6, budget=1000, concurrent=1)
    await reserve(backend, tenant_id, "crashed", 800, lim)
    await backend.renew(holds=[(hold(tenant_id, "crashed", 800), 50)], now=NOW, lease_s=LEASE)  # checkpoint
    assert (await reserve(backend, tenant_id, "x", 10, lim, at=NOW + timedelta(seconds=59))).reason == "concurrency"
    later = NOW + timedelta(seconds=61)
    admitted = await reserve(backend, tenant_id, "y", 950, lim, at=later)  # 50 spent stay counted
    assert isinstance(admitted, Admitted) and admitted.budget_remaining == 0
    # the crashed request is settled late (by usage_reconcile): its checkpoint was already counted
    await backend.settle(hold=hold(tenant_id, "crashed", 800), spent=50, now=later)
    await backend.settle(hold=hold(tenant_id, "y", 950, later), spent=950, now=later)
    assert (await reserve(backend, tenant_id, "z", 1, lim, at=later)).reason == "budget"


async def test_renewal_keeps_a_live_request_alive(backend, tenant_id):
    lim = limits(concurrent=1)
    await reserve(backend, tenant_id, "long", 10, lim)
    await backend.renew(holds=[(hold(tenant_id, "long", 10), 3)], now=NOW + timedelta(seconds=50), lease_s=LEASE)
    blocked = await reserve(backend, tenant_id, "x", 10, lim, at=NOW + timedelta(seconds=100))
    assert isinstance(blocked, RateLimited) and blocked.reason == "concurrency"


async def test_minute_and_month_roll_over(backend, tenant_id):
    lim = limits(tpm=100, budget=150, concurrent=10)
    await reserve(backend, tenant_id, "jan", 100, lim)
    next_minute = NOW + timedelta(seconds=56)  # a new minute, within the first hold's lease
    assert (await reserve(backend, tenant_id, "b", 60, lim, at=next_minute)).reason == "budget"
    assert isinstance(await reserve(backend, tenant_id, "c", 50, lim, at=next_minute), Admitted)
    february = datetime(2030, 2, 1, 0, 0, 1, tzinfo=timezone.utc)
    feb = await reserve(backend, tenant_id, "feb", 100, lim, at=february)
    assert isinstance(feb, Admitted) and feb.budget_remaining == 50
    # a January request settling in February adjusts January only
    await backend.settle(hold=hold(tenant_id, "jan", 100), spent=0, now=february)
    assert (await reserve(backend, tenant_id, "feb2", 60, lim, at=february)).reason == "budget"


async def test_redis_scripts_are_idempotent_so_a_lost_reply_can_be_retried(backend, tenant_id):
    from gateway.quotas.backends.redis import RedisQuotaBackend

    if not isinstance(backend, RedisQuotaBackend):
        pytest.skip("the database backend never retries (one transaction)")
    lim = limits()
    await reserve(backend, tenant_id, "same", 100, lim)
    again = await reserve(backend, tenant_id, "same", 100, lim)  # the retry after a lost reply
    assert isinstance(again, Admitted) and again.window.used == 100
    for _ in range(2):
        await backend.settle(hold=hold(tenant_id, "same", 100), spent=40, now=NOW)
    assert (await backend.window(tenant_id=tenant_id, limits=lim, now=NOW)).used == 40


async def test_redis_unreachable_fails_closed(tenant_id, caplog):
    from tests.support.servers import free_port

    from gateway.quotas.backends.redis import RedisQuotaBackend

    dead = RedisQuotaBackend(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(QuotaUnavailable) as caught:
        await reserve(dead, tenant_id, "r", 1, limits())
    assert caught.value.status == 503 and caught.value.retry_after
    assert "refusing to spend" in caplog.text


def test_reset_durations_in_openais_format():
    from gateway.quotas.headers import format_reset

    cases = {0.0004: "1ms", 0.02: "20ms", 1: "1s", 59.2: "1m0s", 360: "6m0s", 3661: "1h1m1s"}
    assert {seconds: format_reset(seconds) for seconds in cases} == cases

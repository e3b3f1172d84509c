"""GET /v1/usage: the caller's own usage by day and model; never another tenant's."""

from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest

from tests.billing.conftest import add_record  # noqa: F401
from tests.support.billing_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)


def at(day, hour=12):
    return datetime(2030, 1, day, hour, tzinfo=timezone.utc)


def usage(url, key, **params):
    return httpx.get(url + "/v1/usage", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_usage_by_day_and_model_for_the_callers_tenant_only(gateway, make_key, add_record, clock):
    mine, theirs = make_key(), make_key()
    add_record(mine.api_key, at(2), model="m1", prompt=10, completion=5)
    add_record(mine.api_key, at(2, 23), model="m1", prompt=20, completion=0, status="cancelled")  # not billed
    add_record(mine.api_key, at(2), model="m2", prompt=7, completion=3)
    add_record(mine.api_key, at(3), model="m1", prompt=1, completion=1, status="rejected")
    add_record(mine.api_key, at(20), model="m1", prompt=1, completion=1)  # outside the range asked
    add_record(mine.api_key, at(2), model="m1", pending=True)  # still running: not reported yet
    add_record(theirs.api_key, at(2), model="m1", prompt=1000, completion=1000)

    response = usage(gateway, mine.plaintext, start_date="2030-01-01", end_date="2030-01-10")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant"] == mine.api_key.tenant.slug and body["currency"] == "USD"
    rows = {(row["date"], row["model"]): row for row in body["data"]}
    assert set(rows) == {("2030-01-02", "m1"), ("2030-01-02", "m2"), ("2030-01-03", "m1")}
    day2 = rows[("2030-01-02", "m1")]
    assert (day2["requests"], day2["prompt_tokens"], day2["completion_tokens"], day2["total_tokens"]) == (2, 10, 5, 15)
    assert Decimal(day2["cost"]) == Decimal("0.005") + Decimal("0.0075")
    assert rows[("2030-01-03", "m1")]["rejected_requests"] == 1 and rows[("2030-01-03", "m1")]["requests"] == 0
    assert body["totals"]["prompt_tokens"] == 17 and body["totals"]["total_tokens"] == 25
    filtered = usage(gateway, mine.plaintext, start_date="2030-01-01", end_date="2030-01-31", model="m2").json()
    assert [row["model"] for row in filtered["data"]] == ["m2"]
    # the default range is this month so far (the injected clock says 2030-01-15)
    assert {row["date"] for row in usage(gateway, mine.plaintext).json()["data"]} == {"2030-01-02", "2030-01-03"}
    # the other tenant sees only its own
    other = usage(gateway, theirs.plaintext, start_date="2030-01-01", end_date="2030-01-31").json()
    assert other["totals"]["prompt_tokens"] == 1000


@pytest.mark.parametrize("params, code", [
    ({"start_date": "2030-13-01"}, "start_date"),
    ({"start_date": "2030-01-10", "end_date": "2030-01-01"}, "end_date"),
    ({"start_date": "2020-01-01", "end_date": "2030-01-01"}, "start_date"),
])
def test_bad_ranges_are_400(gateway, make_key, params, code):
    response = usage(gateway, make_key().plaintext, **params)
    assert response.status_code == 400 and response.json()["error"]["param"] == code


def test_usage_needs_the_usage_scope(gateway, make_key):
    inference_only = make_key(scopes=["inference"])
    response = usage(gateway, inference_only.plaintext)
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    assert usage(gateway, "fw_bogus").status_code == 401

"""A crashed gateway's open records are closed by `usage_reconcile`, billed up to the last
checkpoint, and their holds released; live ones are left alone."""

from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from billing.models import UsageRecord
from gateway.quotas import periods
from gateway.quotas.backends import get_backend
from gateway.quotas.types import Admitted, Hold, Limits
from tests.support.billing_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)


def test_reconcile_bills_the_checkpoint_and_releases_the_hold(make_key, add_record, clock, db_thread_released):
    from billing.metering import UsageCheckpoint, usage_write_batch

    key = make_key().api_key
    tenant_id = str(key.tenant_id)
    limits = Limits(tpm=10**6, monthly_token_budget=1000, max_concurrent_requests=1)
    backend = get_backend()
    now = clock.now

    def reserve(request_id, tokens, at):
        hold = Hold(request_id=request_id, tenant_id=tenant_id, tokens=tokens, month=periods.month_id(at),
                    minute=periods.minute_id(at))
        return async_to_sync(backend.reserve)(hold=hold, limits=limits, now=at, lease_s=60)

    # a request was admitted, opened, checkpointed (20 prompt + 7 delivered) … then its gateway died
    assert isinstance(reserve("req_crashed", 900, now), Admitted)
    request_id = "req_crashed"
    from billing.metering import UsageOpen
    from decimal import Decimal

    usage_write_batch(ops=[UsageOpen(request_id=request_id, tenant_id=tenant_id, api_key_id=str(key.pk), model="m",
                                     endpoint="chat.completions", stream=True, reserved_tokens=900,
                                     price_per_1k_input_tokens=Decimal("1"), price_per_1k_output_tokens=Decimal("2"),
                                     created_at=now, lease_expires_at=now + timedelta(seconds=60)),
                           UsageCheckpoint(request_id=request_id, prompt_tokens=20, completion_tokens=7,
                                           lease_expires_at=now + timedelta(seconds=60))])
    live = add_record(key, now, pending=True)
    UsageRecord.objects.filter(pk=live).update(lease_expires_at=now + timedelta(hours=1))

    out = StringIO()
    call_command("usage_reconcile", stdout=out)  # lease still running: nothing to do
    assert "reconciled 0" in out.getvalue()
    clock.advance(seconds=61)
    call_command("usage_reconcile", stdout=out)
    record = UsageRecord.objects.get(pk=request_id)
    assert (record.status, record.reason, record.prompt_tokens, record.completion_tokens) == (
        "error", "gateway_lost", 20, 7)
    assert record.cost == Decimal("0.034")
    assert UsageRecord.objects.get(pk=live).status == "pending"
    # the hold is gone: the slot is free and only the 27 billed tokens still count against the budget
    assert isinstance(reserve("req_next", 973, clock.now), Admitted)
    assert reserve("req_over", 1, clock.now).reason in ("budget", "concurrency")
    call_command("usage_reconcile", stdout=out)  # idempotent
    assert UsageRecord.objects.get(pk=request_id).prompt_tokens == 20

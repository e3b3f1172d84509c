"""Shared by the billing tests: usage records written the way the gateway writes them."""

from datetime import datetime
from decimal import Decimal

import pytest


@pytest.fixture
def add_record():
    """add_record(key, at, model=…, prompt=…, completion=…, status="ok", price_in=…, price_out=…)."""
    from billing.metering import UsageFinal, UsageOpen, usage_billable, usage_write_batch

    counter = iter(range(10**6))

    def add(key, at: datetime, *, model="m1", prompt=10, completion=5, status="ok", price_in="0.50",
            price_out="1.50", pending=False):
        request_id = f"req_test{next(counter)}_{at:%Y%m%d%H%M%S}"
        prices = dict(price_per_1k_input_tokens=Decimal(price_in), price_per_1k_output_tokens=Decimal(price_out))
        ops = [UsageOpen(request_id=request_id, tenant_id=str(key.tenant_id), api_key_id=str(key.pk), model=model,
                         endpoint="chat.completions", stream=False, reserved_tokens=prompt + 16, created_at=at,
                         lease_expires_at=at, rejected="tpm" if status == "rejected" else "", **prices)]
        if not pending and status != "rejected":
            billed_prompt, billed_completion = usage_billable(status=status, prompt_tokens=prompt,
                                                              completion_tokens=completion)
            ops.append(UsageFinal(request_id=request_id, status=status, reason="", prompt_tokens=billed_prompt,
                                  completion_tokens=billed_completion, ttft_s=0.01, duration_s=0.1,
                                  finalised_at=at, **prices))
        usage_write_batch(ops=ops)
        return request_id

    return add

"""State of the database quota backend (the embedded default; Redis holds the same state in production).

One QuotaState row per tenant holds the current month's and minute's token counters and the number
of live holds, so one conditional UPDATE can check and reserve all three atomically. One QuotaHold
row per in-flight request remembers what it reserved, for settling and for lease expiry.
"""

from django.db import models


class QuotaState(models.Model):
    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, primary_key=True,
                                  related_name="quota_state")
    month = models.IntegerField(default=0)  # YYYYMM the month counter belongs to
    month_used = models.BigIntegerField(default=0)  # tokens spent + held this month
    minute = models.BigIntegerField(default=0)  # epoch minute the window counter belongs to
    minute_used = models.BigIntegerField(default=0)
    active = models.IntegerField(default=0)  # holds with a live lease (concurrency)


class QuotaHold(models.Model):
    request_id = models.CharField(max_length=64, primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="quota_holds")
    tokens = models.BigIntegerField()  # currently counted against the month (and minute, if still current)
    month = models.IntegerField()
    minute = models.BigIntegerField()
    spent = models.BigIntegerField(default=0)  # billable so far (checkpointed by lease renewals)
    lease_expires_at = models.DateTimeField(db_index=True)
    live = models.BooleanField(default=True)  # False once the lease lapsed: shrunk to `spent`, slot freed

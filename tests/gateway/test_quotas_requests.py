"""RPM counting (django-ratelimit on the Django cache) at the edges: a window that ends while the
cache answers, and a cache that cannot count."""

import types
import uuid
import zlib

import django_ratelimit.core
import pytest
from django.core.cache import cache
from django.test import RequestFactory

from gateway.quotas.requests import PERIOD_S, requests_count
from gateway.quotas.types import QuotaUnavailable


def principal(rpm=5):
    return types.SimpleNamespace(tenant_id=uuid.uuid4(), api_key_id=uuid.uuid4(),
                                 plan=types.SimpleNamespace(rpm=rpm, rpm_per_key=0))


def test_a_window_ending_during_the_round_trip_still_counts(monkeypatch):
    # django-ratelimit reads the clock before and after the cache call; when the window's last second
    # passes in between, time_left is -1 although the count is real. That was a spurious 503 under load.
    who = principal()
    jitter = zlib.crc32(str(who.tenant_id).encode()) % PERIOD_S
    ticks = iter(range(1_800_000_000 - 1_800_000_000 % PERIOD_S + jitter, 1_900_000_000))  # window ends now
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: next(ticks)))
    cache.clear()
    window, refused, _ = requests_count(request=RequestFactory().get("/"), principal=who)
    assert refused is None and window.limit == 5 and window.remaining == 4
    assert window.reset_s > 0


def test_a_cache_that_cannot_count_fails_closed(monkeypatch):
    monkeypatch.setattr(cache, "add", lambda *a, **k: False)
    monkeypatch.setattr(cache, "incr", lambda *a, **k: None)  # what the Redis backend answers when it fails
    with pytest.raises(QuotaUnavailable):
        requests_count(request=RequestFactory().get("/"), principal=principal())

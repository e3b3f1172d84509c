"""Backend selection: settings.FAIRWAY_QUOTA_BACKEND is "redis", "database" or a dotted class path."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from .base import QuotaBackend

ALIASES = {"redis": "gateway.quotas.backends.redis.RedisQuotaBackend",
           "database": "gateway.quotas.backends.database.DatabaseQuotaBackend"}
_instances: dict[tuple, QuotaBackend] = {}


def get_backend() -> QuotaBackend:
    """One instance per configuration (tests switch settings; the instance follows)."""
    name = settings.FAIRWAY_QUOTA_BACKEND
    key = (name, settings.FAIRWAY_QUOTA_REDIS_URL)
    backend = _instances.get(key)
    if backend is None:
        backend = import_string(ALIASES.get(name, name))()
        _instances[key] = backend
    return backend

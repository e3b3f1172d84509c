"""Liveness (`/health`: the process answers) and readiness (`/ready`: it can serve traffic now).

Readiness checks what a request needs: the database, the cache, and at least one healthy inference
replica. A load balancer takes a gateway out while /ready answers 503.
"""

from __future__ import annotations

import asyncio
import uuid

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from config import dbthread

from . import upstream


READY_DATABASE_TIMEOUT_S = 3.0


async def health(request):
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 — any failure means not ready
        connection.close()  # this thread keeps its connection: never keep a broken one
        return False


def _cache_ok() -> bool:
    probe = f"fw:ready:{uuid.uuid4().hex}"
    try:
        cache.set(probe, 1, 5)
        ok = cache.get(probe) == 1
        cache.delete(probe)
        return ok
    except Exception:  # noqa: BLE001
        return False


async def ready(request):
    try:  # the query threads may be busy with a burst: slow is not down, but a probe must answer
        database = await asyncio.wait_for(dbthread.query(_database_ok), READY_DATABASE_TIMEOUT_S)
    except TimeoutError:
        database = False
    checks = {"database": database, "cache": await sync_to_async(_cache_ok)()}
    try:
        checks["inference"] = bool(await upstream.list_models())
    except Exception:  # noqa: BLE001
        checks["inference"] = False
    ok = all(checks.values())
    return JsonResponse({"ready": ok, "checks": checks}, status=200 if ok else 503)
